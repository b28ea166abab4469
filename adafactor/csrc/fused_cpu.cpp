// Fused Adafactor step on CPU: one call per parameter group, two passes over each tensor.
//
// Pass 1 reads G (and X, for RMS(X) when the parameter scale is on) and gives the new row and
// column statistics R, C (or the full second moment V), the clipping RMS(U) from the factored
// statistics (RMS(U)^2 n m = mean(R) sum_j (sum_i G_ij^2 / R_i) / C_j, so no update is formed),
// and RMS(X_{t-1}). Pass 2 reads G and X and writes X: update, clip, relative step, momentum,
// weight decay and the write-back (bf16 with stochastic rounding from a counter-based hash).
//
// Work is cut into units of a fixed size (rows of one matrix, or a flat range), independent of
// the thread count; each unit keeps its own partial sums, combined in unit order, so results are
// bitwise identical for any number of threads. One OpenMP region per call, three barriers.
//
// The column scratch (each unit's partial column sums) is allocated per call, so concurrent calls
// from several threads share nothing, and is freed on return. A matrix gets at most as many row
// units as keep its scratch within a quarter of its size, so wide matrices (few rows, many
// columns) never hold a multiple of themselves.
//
// Overflow: G^2 saturates at the fp32 maximum (NaN stays NaN), and sums are taken in double, so
// gradients up to the fp32 range give finite statistics and finite, clipped updates.

#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr int64_t kUnitNumel = 1 << 17;  // elements per work unit (fixed: results don't depend
                                         // on the thread count)
// Tensors up to this size are done whole by one thread, pass 2 right after pass 1, so that pass 2
// finds G and X still in the last-level cache; bigger ones are shared out unit by unit.
constexpr int64_t kWholeNumel = 1 << 20;

enum Mode : int64_t { kBoth = 0, kRow = 1, kCol = 2, kNone = 3 };
enum DType : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// Scratch per unit: m float column means, then (from an even offset) m double sums.
inline int64_t even(int64_t m) { return (m + 1) & ~int64_t{1}; }
inline int64_t stride(int64_t m) { return even(m) + 2 * m; }

inline float sat(float v) { return v > FLT_MAX ? FLT_MAX : v; }  // inf -> max, NaN stays NaN

inline uint32_t mix32(uint32_t x) {  // "lowbias32" integer hash
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// 16 uniform bits for element e of a tensor whose step seeds are (s0, s1).
inline uint32_t noise16(uint64_t e, uint32_t s0, uint32_t s1) {
  return mix32(mix32(static_cast<uint32_t>(e) ^ s0) + s1) >> 16;
}

inline float bf16_to_f(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f_to_bf16_rne(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

inline uint16_t f_to_bf16_sr(float f, uint32_t noise) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + noise) >> 16);
}

struct Item {
  int dtype;
  Mode mode;
  int64_t numel, n, m, mats;  // mats matrices of n x m (mode kNone: one "row" of numel)
  void* x;
  const void* g;
  float* row;  // mats x n
  float* col;  // mats x m
  float* v;    // numel
  float* mom;  // numel or null
  float rho, b;
  uint32_t s0, s1;
  int64_t pieces;      // units per matrix (row blocks), or flat units for kNone
  int64_t rows_per;    // rows per unit (or elements per unit for kNone)
  int64_t unit0;       // first unit index
  int64_t scratch0;    // first float of this item's column scratch (2 * pieces * m per matrix)
  // results of the finalize step
  float coef;          // alpha / clip
  double sum_u2 = 0.0;
};

struct Unit {
  int32_t item;
  int64_t mat, r0, r1;  // rows [r0, r1) of matrix mat (kNone: flat [r0, r1))
  double xsq, su2;
};

template <int D>
struct Storage;
template <>
struct Storage<kF32> { using type = float; };
template <>
struct Storage<kBF16> { using type = uint16_t; };
template <>
struct Storage<kF16> { using type = at::Half; };

template <int D>
inline float ld(const typename Storage<D>::type* __restrict p, int64_t i) {
  if constexpr (D == kF32) {
    return p[i];
  } else if constexpr (D == kBF16) {
    return bf16_to_f(p[i]);
  } else {
    return static_cast<float>(p[i]);
  }
}

struct Hyper {
  float beta1, eps1, eps2, clip, decay_wd;  // clip <= 0: off; decay_wd = weight decay
  bool scale, sr;
};

// ---- pass 1 -------------------------------------------------------------------------------
template <int D>
void pass1(const Item& it, Unit& u, float* scratch, const Hyper& h) {
  using T = typename Storage<D>::type;
  const T* __restrict gp = static_cast<const T*>(it.g);
  const T* __restrict xp = static_cast<const T*>(it.x);
  const float b = it.b, omb = 1.0f - it.b, eps1 = h.eps1;
  double xsq = 0.0, su2 = 0.0;
  if (it.mode == kNone) {
    float* __restrict v = it.v;
    for (int64_t e0 = u.r0; e0 < u.r1; e0 += 256) {
      const int64_t e1 = std::min(u.r1, e0 + 256);
      float xs = 0.0f;
      double q2 = 0.0;  // U^2 reaches 1e38 for gradients near the fp32 maximum
#pragma omp simd reduction(+ : q2)
      for (int64_t e = e0; e < e1; ++e) {
        const float g = ld<D>(gp, e);
        const float vv = b * v[e] + omb * (sat(g * g) + eps1);
        v[e] = vv;
        const float q = g / std::sqrt(vv);
        q2 += static_cast<double>(q) * q;
      }
      if (h.scale) {
#pragma omp simd reduction(+ : xs)
        for (int64_t e = e0; e < e1; ++e) {
          const float x = ld<D>(xp, e);
          xs += x * x;
        }
      }
      xsq += xs;
      su2 += q2;
    }
    u.xsq = xsq;
    u.su2 = su2;
    return;
  }
  const int64_t m = it.m;
  const int64_t piece = (u.r0 / it.rows_per);
  float* __restrict colsum = scratch + it.scratch0 + (u.mat * it.pieces + piece) * stride(m);
  // Unsaturated sums for RMS(U), in double: sum_i G_ij^2 / R_i ("both") or sum_i G_ij^2 ("col").
  double* __restrict colw = reinterpret_cast<double*>(colsum + even(m));
  if (it.mode != kRow) {
    std::fill(colsum, colsum + m, 0.0f);
    std::fill(colw, colw + m, 0.0);
  }
  float* rowstat = it.row ? it.row + u.mat * it.n : nullptr;
  // Row and column statistics are accumulated as means (each term G^2 / m or G^2 / n), so with
  // G^2 saturated at the fp32 maximum no partial sum can overflow.
  const float inv_m = 1.0f / static_cast<float>(m), inv_n = 1.0f / static_cast<float>(it.n);
  for (int64_t i = u.r0; i < u.r1; ++i) {
    const int64_t base = (u.mat * it.n + i) * m;
    const T* __restrict g = gp + base;
    const T* __restrict x = xp + base;
    double rs = 0.0;  // mean_j G_ij^2
    double rs_true = 0.0;  // sum_j G_ij^2, unsaturated ("row")
    for (int64_t j0 = 0; j0 < m; j0 += 256) {
      const int64_t j1 = std::min(m, j0 + 256);
      float rsf = 0.0f;
      if (it.mode == kCol) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const float gv = ld<D>(g, j);
          colsum[j] += sat(gv * gv) * inv_n;
          colw[j] += static_cast<double>(gv) * gv;
        }
      } else if (it.mode == kRow) {
        double rt = 0.0;
#pragma omp simd reduction(+ : rsf, rt)
        for (int64_t j = j0; j < j1; ++j) {
          const float gv = ld<D>(g, j);
          rsf += sat(gv * gv) * inv_m;
          rt += static_cast<double>(gv) * gv;
        }
        rs_true += rt;
      } else {
#pragma omp simd reduction(+ : rsf)
        for (int64_t j = j0; j < j1; ++j) {
          const float gv = ld<D>(g, j);
          rsf += sat(gv * gv) * inv_m;
        }
      }
      rs += rsf;
      if (h.scale) {
        float xs = 0.0f;
#pragma omp simd reduction(+ : xs)
        for (int64_t j = j0; j < j1; ++j) {
          const float xv = ld<D>(x, j);
          xs += xv * xv;
        }
        xsq += xs;
      }
    }
    if (it.mode == kCol) continue;
    // Alg. 4 line 5, as means: R = b R + (1 - b) mean_j(G^2 + eps1)
    const float target = sat(static_cast<float>(rs)) + eps1;
    const float r = b * rowstat[i] + omb * target;
    rowstat[i] = r;
    if (it.mode == kRow) {
      su2 += rs_true / r;  // sum_j G_ij^2 / R_i
      continue;
    }
    const double inv_r = 1.0 / r;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) {
      const float gv = ld<D>(g, j);
      colsum[j] += sat(gv * gv) * inv_n;
      colw[j] += (static_cast<double>(gv) * gv) * inv_r;
    }
  }
  u.xsq = xsq;
  u.su2 = su2;
}

// ---- finalize (per item): C, mean(R), RMS(U), alpha, clip; column coefficients ------------
void finalize(Item& it, const std::vector<Unit>& units, float* scratch, const Hyper& h,
              float* stats) {
  const float b = it.b, omb = 1.0f - it.b;
  double xsq = 0.0, su2 = 0.0;
  const int64_t nunits = it.mode == kNone ? it.pieces : it.pieces * it.mats;
  for (int64_t k = 0; k < nunits; ++k) {
    xsq += units[it.unit0 + k].xsq;
    su2 += units[it.unit0 + k].su2;
  }
  std::vector<float> row_scale(it.mode == kBoth ? it.mats : 0);
  if (it.mode == kBoth || it.mode == kCol) {
    const int64_t m = it.m;
    std::vector<double> cs(m), cw(m);
    for (int64_t k = 0; k < it.mats; ++k) {
      std::fill(cs.begin(), cs.end(), 0.0);
      std::fill(cw.begin(), cw.end(), 0.0);
      float* first = scratch + it.scratch0 + k * it.pieces * stride(m);
      for (int64_t p = 0; p < it.pieces; ++p) {
        const float* ps = first + p * stride(m);
        const double* pw = reinterpret_cast<const double*>(ps + even(m));
        for (int64_t j = 0; j < m; ++j) cs[j] += ps[j];
        for (int64_t j = 0; j < m; ++j) cw[j] += pw[j];
      }
      float* c = it.col + k * m;
      double mean_r = 1.0;
      if (it.mode == kBoth) {
        double sr = 0.0;
        const float* r = it.row + k * it.n;
        for (int64_t i = 0; i < it.n; ++i) sr += r[i];
        mean_r = sr / it.n;
        row_scale[k] = static_cast<float>(std::sqrt(mean_r));
      }
      double acc = 0.0;
      for (int64_t j = 0; j < m; ++j) {
        // Alg. 4 line 6, as means: C = b C + (1 - b) mean_i(G^2 + eps1)
        const float cj = b * c[j] + omb * (sat(static_cast<float>(cs[j])) + h.eps1);
        c[j] = cj;
        acc += cw[j] / cj;
        first[j] = 1.0f / std::sqrt(cj);  // column coefficient, scaled below
      }
      su2 += mean_r * acc;
    }
  }
  const double param_rms = std::sqrt(xsq / static_cast<double>(it.numel));
  const float alpha =
      h.scale ? static_cast<float>(it.rho * std::max(static_cast<double>(h.eps2), param_rms))
              : it.rho;
  const float update_rms = static_cast<float>(std::sqrt(su2 / static_cast<double>(it.numel)));
  float clip = 1.0f;
  if (h.clip > 0.0f) clip = std::max(1.0f, update_rms / h.clip);
  it.coef = alpha / clip;
  stats[0] = alpha;
  stats[1] = update_rms;
  stats[2] = (h.clip > 0.0f && update_rms > h.clip) ? 1.0f : 0.0f;
  if (it.mode == kBoth || it.mode == kCol) {
    for (int64_t k = 0; k < it.mats; ++k) {
      float* first = scratch + it.scratch0 + k * it.pieces * stride(it.m);
      const float s = it.mode == kBoth ? it.coef * row_scale[k] : it.coef;
      for (int64_t j = 0; j < it.m; ++j) first[j] *= s;
    }
  }
}

// ---- pass 2 --------------------------------------------------------------------------------
// X <- X decay - s (or, with momentum, M <- beta1 M + (1 - beta1) s; X <- X decay - M) for the
// elements [0, len) at x, where s = alpha U_hat = G * a * b_j (row and column coefficients).
template <int D, bool kMom, bool kDecay, int kKind>  // kKind 0: g*a*c_j, 1: g*a, 2: coef*g/sqrt(v)
inline void update_span(typename Storage<D>::type* __restrict x,
                        const typename Storage<D>::type* __restrict g, float* __restrict mom,
                        const float* __restrict cc, const float* __restrict v, float a,
                        int64_t len, int64_t e0, float decay, float beta1, bool sr, uint32_t s0,
                        uint32_t s1) {
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    float s;
    if constexpr (kKind == 0) s = (ld<D>(g, j) * a) * cc[j];
    else if constexpr (kKind == 1) s = ld<D>(g, j) * a;
    else s = a * (ld<D>(g, j) / std::sqrt(v[j]));
    float xv = ld<D>(x, j);
    if constexpr (kDecay) xv *= decay;
    if constexpr (kMom) {
      const float mm = beta1 * mom[j] + (1.0f - beta1) * s;
      mom[j] = mm;
      xv -= mm;
    } else {
      xv -= s;
    }
    if constexpr (D == kF32) {
      x[j] = xv;
    } else if constexpr (D == kBF16) {
      x[j] = sr ? f_to_bf16_sr(xv, noise16(static_cast<uint64_t>(e0 + j), s0, s1))
                : f_to_bf16_rne(xv);
    } else {
      x[j] = static_cast<at::Half>(xv);
    }
  }
}

template <int D, bool kMom, bool kDecay>
void pass2_t(const Item& it, const Unit& u, const float* scratch, const Hyper& h) {
  using T = typename Storage<D>::type;
  T* xp = static_cast<T*>(it.x);
  const T* gp = static_cast<const T*>(it.g);
  const float decay = 1.0f - it.rho * h.decay_wd;
  const float beta1 = h.beta1;
  const bool sr = h.sr && D == kBF16;
  float* mom = it.mom;
  if (it.mode == kNone) {
    const int64_t e0 = u.r0, len = u.r1 - u.r0;
    update_span<D, kMom, kDecay, 2>(xp + e0, gp + e0, kMom ? mom + e0 : nullptr, nullptr,
                                    it.v + e0, it.coef, len, e0, decay, beta1, sr, it.s0, it.s1);
    return;
  }
  const int64_t m = it.m;
  const float* cc = scratch + it.scratch0 + u.mat * it.pieces * stride(m);
  for (int64_t i = u.r0; i < u.r1; ++i) {
    const int64_t base = (u.mat * it.n + i) * m;
    float* mrow = kMom ? mom + base : nullptr;
    if (it.mode == kCol) {
      update_span<D, kMom, kDecay, 0>(xp + base, gp + base, mrow, cc, nullptr, 1.0f, m, base,
                                      decay, beta1, sr, it.s0, it.s1);
      continue;
    }
    const float r = it.row[u.mat * it.n + i];
    if (it.mode == kRow) {
      update_span<D, kMom, kDecay, 1>(xp + base, gp + base, mrow, nullptr, nullptr,
                                      it.coef / std::sqrt(r), m, base, decay, beta1, sr, it.s0,
                                      it.s1);
      continue;
    }
    update_span<D, kMom, kDecay, 0>(xp + base, gp + base, mrow, cc, nullptr,
                                    1.0f / std::sqrt(r), m, base, decay, beta1, sr, it.s0, it.s1);
  }
}

template <int D>
void pass2(const Item& it, const Unit& u, const float* scratch, const Hyper& h) {
  const bool mom = it.mom != nullptr, dec = h.decay_wd != 0.0f;
  if (mom && dec) pass2_t<D, true, true>(it, u, scratch, h);
  else if (mom) pass2_t<D, true, false>(it, u, scratch, h);
  else if (dec) pass2_t<D, false, true>(it, u, scratch, h);
  else pass2_t<D, false, false>(it, u, scratch, h);
}

int dtype_code(const at::Tensor& t) {
  if (t.scalar_type() == at::kFloat) return kF32;
  if (t.scalar_type() == at::kBFloat16) return kBF16;
  TORCH_CHECK(t.scalar_type() == at::kHalf, "fused Adafactor: unsupported dtype ", t.dtype());
  return kF16;
}

float* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<float>() : nullptr;
}

}  // namespace

// stats: float32 (k, 3) tensor receiving (alpha, RMS(U), clipped) per tensor.
void fused_step(const std::vector<at::Tensor>& xs, const std::vector<at::Tensor>& gs,
                const std::vector<at::Tensor>& rows, const std::vector<at::Tensor>& cols,
                const std::vector<at::Tensor>& vs, const std::vector<at::Tensor>& moms,
                const std::vector<int64_t>& modes, const std::vector<double>& rhos,
                const std::vector<double>& betas, const std::vector<int64_t>& seeds,
                double beta1, double eps1, double eps2, double clip, bool scale,
                double weight_decay, bool stochastic_rounding, at::Tensor stats,
                int64_t threads) {
  const size_t k = xs.size();
  TORCH_CHECK(gs.size() == k && rows.size() == k && cols.size() == k && vs.size() == k &&
                  moms.size() == k && modes.size() == k && rhos.size() == k &&
                  betas.size() == k && seeds.size() == 2 * k,
              "fused Adafactor: argument lists differ in length");
  TORCH_CHECK(stats.scalar_type() == at::kFloat && stats.is_contiguous() &&
                  stats.numel() == static_cast<int64_t>(3 * k),
              "fused Adafactor: bad stats buffer");
  Hyper h{static_cast<float>(beta1), static_cast<float>(eps1), static_cast<float>(eps2),
          static_cast<float>(clip), static_cast<float>(weight_decay), scale,
          stochastic_rounding};
  std::vector<Item> items(k);
  std::vector<Unit> units;
  int64_t scratch_floats = 0;
  for (size_t t = 0; t < k; ++t) {
    const at::Tensor& x = xs[t];
    const at::Tensor& g = gs[t];
    TORCH_CHECK(x.is_contiguous() && g.is_contiguous() && x.scalar_type() == g.scalar_type(),
                "fused Adafactor: needs contiguous X and G of one dtype");
    Item& it = items[t];
    it.dtype = dtype_code(x);
    it.mode = static_cast<Mode>(modes[t]);
    it.numel = x.numel();
    it.x = x.data_ptr();
    it.g = g.data_ptr();
    it.row = ptr_or_null(rows[t]);
    it.col = ptr_or_null(cols[t]);
    it.v = ptr_or_null(vs[t]);
    it.mom = ptr_or_null(moms[t]);
    it.rho = static_cast<float>(rhos[t]);
    it.b = static_cast<float>(betas[t]);
    it.s0 = static_cast<uint32_t>(seeds[2 * t]);
    it.s1 = static_cast<uint32_t>(seeds[2 * t + 1]);
    it.unit0 = static_cast<int64_t>(units.size());
    if (it.mode == kNone) {
      it.n = 1;
      it.m = it.numel;
      it.mats = 1;
      it.rows_per = kUnitNumel;
      it.pieces = (it.numel + kUnitNumel - 1) / kUnitNumel;
      it.scratch0 = 0;
      for (int64_t p = 0; p < it.pieces; ++p)
        units.push_back({static_cast<int32_t>(t), 0, p * kUnitNumel,
                         std::min(it.numel, (p + 1) * kUnitNumel), 0.0, 0.0});
      continue;
    }
    it.m = x.size(-1);
    it.n = x.size(-2);
    it.mats = it.numel / (it.n * it.m);
    it.rows_per = std::max<int64_t>(1, kUnitNumel / it.m);
    it.pieces = (it.n + it.rows_per - 1) / it.rows_per;
    if (it.mode != kRow) {
      // Scratch per matrix (pieces * stride(m) floats) at most n m / 4, and at least one unit.
      const int64_t cap = std::max<int64_t>(1, it.n * it.m / (4 * stride(it.m)));
      if (it.pieces > cap) {
        it.pieces = cap;
        it.rows_per = (it.n + cap - 1) / cap;
        it.pieces = (it.n + it.rows_per - 1) / it.rows_per;
      }
    }
    it.scratch0 = scratch_floats;
    if (it.mode != kRow) scratch_floats += it.mats * it.pieces * stride(it.m);
    for (int64_t q = 0; q < it.mats; ++q)
      for (int64_t p = 0; p < it.pieces; ++p)
        units.push_back({static_cast<int32_t>(t), q, p * it.rows_per,
                         std::min(it.n, (p + 1) * it.rows_per), 0.0, 0.0});
  }
  // Per call (never shared between threads), uninitialized: each unit clears its own slot.
  std::unique_ptr<float[]> buf(scratch_floats > 0 ? new float[scratch_floats] : nullptr);
  float* scratch = buf.get();
  float* st = stats.data_ptr<float>();
  // Phase A jobs: pass-1 units of the big tensors, then the whole small tensors, largest first.
  std::vector<int64_t> jobs, big;
  std::vector<int64_t> whole;
  for (int64_t t = 0; t < static_cast<int64_t>(k); ++t) {
    Item& it = items[t];
    const int64_t nu = it.mode == kNone ? it.pieces : it.pieces * it.mats;
    if (it.numel <= kWholeNumel) {
      whole.push_back(t);
    } else {
      big.push_back(t);
      for (int64_t q = 0; q < nu; ++q) jobs.push_back(it.unit0 + q);
    }
  }
  std::stable_sort(whole.begin(), whole.end(),
                   [&](int64_t a, int64_t b) { return items[a].numel > items[b].numel; });
  const int64_t nbig_units = static_cast<int64_t>(jobs.size());
  for (int64_t t : whole) jobs.push_back(-1 - t);  // negative: a whole tensor
  const int64_t njobs = static_cast<int64_t>(jobs.size());
  const int64_t nbig = static_cast<int64_t>(big.size());
  const int nthreads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, njobs)));
  auto run_pass1 = [&](Unit& u) {
    const Item& it = items[u.item];
    if (it.dtype == kF32) pass1<kF32>(it, u, scratch, h);
    else if (it.dtype == kBF16) pass1<kBF16>(it, u, scratch, h);
    else pass1<kF16>(it, u, scratch, h);
  };
  auto run_pass2 = [&](const Unit& u) {
    const Item& it = items[u.item];
    if (it.dtype == kF32) pass2<kF32>(it, u, scratch, h);
    else if (it.dtype == kBF16) pass2<kBF16>(it, u, scratch, h);
    else pass2<kF16>(it, u, scratch, h);
  };
  {
    pybind11::gil_scoped_release no_gil;
#pragma omp parallel num_threads(nthreads)
    {
#pragma omp for schedule(dynamic, 1)
      for (int64_t q = 0; q < njobs; ++q) {
        const int64_t job = jobs[q];
        if (job >= 0) {
          run_pass1(units[job]);
          continue;
        }
        const int64_t t = -1 - job;
        Item& it = items[t];
        const int64_t nu = it.mode == kNone ? it.pieces : it.pieces * it.mats;
        for (int64_t w = 0; w < nu; ++w) run_pass1(units[it.unit0 + w]);
        finalize(it, units, scratch, h, st + 3 * t);
        for (int64_t w = 0; w < nu; ++w) run_pass2(units[it.unit0 + w]);
      }
      if (nbig > 0) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nbig; ++b) finalize(items[big[b]], units, scratch, h, st + 3 * big[b]);
#pragma omp for schedule(dynamic, 1)
        for (int64_t q = 0; q < nbig_units; ++q) run_pass2(units[jobs[q]]);
      }
    }
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("fused_step", &fused_step, "Fused Adafactor step for one parameter group (CPU)");
}
