"""The Triton kernels of `adafactor.triton_step` (imported on first use: triton is optional, and
TRITON_INTERPRET=1 must be set before this module is imported for the kernels to run on CPU)."""

import triton
import triton.language as tl


@triton.jit
def _tile(pid_b, pid_m, pid_n, M, N, BM: tl.constexpr, BN: tl.constexpr):
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    offs = pid_b.to(tl.int64) * M * N + rows[:, None].to(tl.int64) * N + cols[None, :]
    return rows, cols, mask, offs

@triton.jit
def _g2(g, eps1, FMAX: tl.constexpr):
    # G^2 saturated at the fp32 maximum (NaN stays NaN), plus eps1.
    return tl.minimum(g * g, FMAX, propagate_nan=tl.PropagateNan.ALL) + eps1

@triton.jit
def sums_kernel(g_ptr, x_ptr, rowp_ptr, colp_ptr, xsq_ptr, M, N, n_rb, n_cb, eps1,
                 FMAX: tl.constexpr, WANT_ROW: tl.constexpr, WANT_COL: tl.constexpr,
                 WANT_X: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    pid_b, pid_m, pid_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows, cols, mask, offs = _tile(pid_b, pid_m, pid_n, M, N, BM, BN)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sq = tl.where(mask, _g2(g, eps1, FMAX), 0.0).to(tl.float64)
    if WANT_ROW:  # rowp[b, col block, row]
        base = (pid_b.to(tl.int64) * n_cb + pid_n) * M
        tl.store(rowp_ptr + base + rows, tl.sum(sq, axis=1), mask=rows < M)
    if WANT_COL:  # colp[b, row block, col]
        base = (pid_b.to(tl.int64) * n_rb + pid_m) * N
        tl.store(colp_ptr + base + cols, tl.sum(sq, axis=0), mask=cols < N)
    if WANT_X:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float64)
        tile = (pid_b.to(tl.int64) * n_rb + pid_m) * n_cb + pid_n
        tl.store(xsq_ptr + tile, tl.sum(tl.sum(x * x, axis=1), axis=0))

@triton.jit
def _w(g, rows, cols, mask, offs, pid_b, M, N, r_ptr, c_ptr, v_ptr, eps1, b, one_minus_b,
       FMAX: tl.constexpr, MODE: tl.constexpr, UPDATE_V: tl.constexpr):
    # w = G / sqrt(V_hat) up to sqrt(mean R) (mode "both"); "none" forms the EMA of V here.
    if MODE == 0:
        r = tl.load(r_ptr + pid_b.to(tl.int64) * M + rows, mask=rows < M, other=1.0)
        c = tl.load(c_ptr + pid_b.to(tl.int64) * N + cols, mask=cols < N, other=1.0)
        w = g * tl.rsqrt(r)[:, None] * tl.rsqrt(c)[None, :]
    elif MODE == 1:
        r = tl.load(r_ptr + pid_b.to(tl.int64) * M + rows, mask=rows < M, other=1.0)
        w = g * tl.rsqrt(r)[:, None]
    elif MODE == 2:
        c = tl.load(c_ptr + pid_b.to(tl.int64) * N + cols, mask=cols < N, other=1.0)
        w = g * tl.rsqrt(c)[None, :]
    else:
        v = tl.load(v_ptr + offs, mask=mask, other=1.0)
        if UPDATE_V:
            v = v * b + _g2(g, eps1, FMAX) * one_minus_b
            tl.store(v_ptr + offs, v, mask=mask)
        w = g / tl.sqrt(v)
    return w

@triton.jit
def usq_kernel(g_ptr, r_ptr, c_ptr, v_ptr, usq_ptr, M, N, n_rb, n_cb, eps1, b, one_minus_b,
                FMAX: tl.constexpr, MODE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    pid_b, pid_m, pid_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows, cols, mask, offs = _tile(pid_b, pid_m, pid_n, M, N, BM, BN)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = _w(g, rows, cols, mask, offs, pid_b, M, N, r_ptr, c_ptr, v_ptr, eps1, b,
           one_minus_b, FMAX, MODE, True)
    w = tl.where(mask, w, 0.0).to(tl.float64)
    tile = (pid_b.to(tl.int64) * n_rb + pid_m) * n_cb + pid_n
    tl.store(usq_ptr + tile, tl.sum(tl.sum(w * w, axis=1), axis=0))

@triton.jit
def _mix32(x):  # adafactor.rounding.mix32 on int64 lanes, masked to 32 bits
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)

@triton.jit
def apply_kernel(x_ptr, g_ptr, r_ptr, c_ptr, v_ptr, m_ptr, f_ptr, M, N, eps1, beta1,
                  decay, s0, s1, FMAX: tl.constexpr, MODE: tl.constexpr,
                  UPDATE_V: tl.constexpr, MOMENTUM: tl.constexpr, ROUND: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr):
    pid_b, pid_m, pid_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows, cols, mask, offs = _tile(pid_b, pid_m, pid_n, M, N, BM, BN)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    x_in = tl.load(x_ptr + offs, mask=mask, other=0.0)
    x = x_in.to(tl.float32)
    w = _w(g, rows, cols, mask, offs, pid_b, M, N, r_ptr, c_ptr, v_ptr, eps1, 0.0, 1.0,
           FMAX, MODE, UPDATE_V)
    step = tl.load(f_ptr + pid_b) * w
    if MOMENTUM:
        mom = tl.load(m_ptr + offs, mask=mask, other=0.0) * beta1 + step * (1 - beta1)
        tl.store(m_ptr + offs, mom, mask=mask)
        step = mom
    x = x * decay - step
    if ROUND:  # keyed stochastic rounding to bf16: the bits of adafactor.rounding
        h = _mix32((offs & 0xFFFFFFFF) ^ s0)
        noise = (_mix32((h + s1) & 0xFFFFFFFF) >> 16).to(tl.int32)
        bits = (x.to(tl.int32, bitcast=True) + noise) & -65536
        x = bits.to(tl.float32, bitcast=True)
    tl.store(x_ptr + offs, x.to(x_in.dtype), mask=mask)

