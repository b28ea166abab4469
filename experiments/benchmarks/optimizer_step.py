"""Benchmark one optimizer step on Transformer-base parameter shapes (not a test).

    python -m experiments.benchmarks.optimizer_step [--threads 2] [--repeats 15] [--device cpu]
        [--shapes vaswani|preset|wide] [--optimizers ...] [--compile-timing]

Parameters (`--shapes`): "vaswani" (default) is Transformer base (Vaswani et al.) with one shared
32000 x 512 embedding, 6 encoder and 6 decoder layers, d_model 512, d_ff 2048, attention
projections and FFN layers with biases, two (encoder) or three (decoder) layer norms per layer:
253 tensors, 60.5M parameters. "preset" is this project's `base` model (models.presets, vocabulary
32768). "wide" is one 64 x 262144 matrix (an embedding-shaped extreme: the fused step's scratch
is bounded by a quarter of it). Gradients are fixed N(0, 1e-3^2) tensors shared by all
optimizers (none writes to grads).

Optimizers, each with its own copy of the parameters:
  ours          adafactor.Adafactor with the paper's defaults (Algorithm 6: factored, beta1 none,
                beta2hat = 1 - t^-0.8, d = 1, relative step min(1e-2, 1/sqrt t), parameter scale);
                implementation="auto": the fused C++ step on CPU for every tensor it takes
  ours-reference  the same, implementation="reference" (the one update math, in ATen ops)
  torch-adafactor torch.optim.Adafactor(foreach=True) (defaults)
  hf-adafactor  transformers.optimization.Adafactor (relative step, parameter scale, defaults)
  adamw         torch.optim.AdamW(foreach=True, lr=1e-3)
  adam-fused    torch.optim.Adam(fused=True, lr=1e-3)
  adamw-fused   torch.optim.AdamW(fused=True, lr=1e-3)

Method:
* Step time: after two warm-up steps each, the optimizers' steps are interleaved in one process
  (round-robin, `--repeats` rounds), so background load hits them alike; the table gives the median
  and the ratio of each median to ours.
* State: `adafactor.optimizer_state_bytes` (exact bytes of the state tensors) after the steps.
* Peak memory rise of one step: measured for each optimizer in a fresh subprocess, after one
  warm-up step (so the first step's one-off state allocation is not counted). On CPU the kernel's
  resident-set high-water mark is reset by writing "5" to /proc/self/clear_refs, then one step
  runs and the rise is VmHWM - VmRSS(before). This is the extra resident memory the step touches
  (temporaries, newly faulted pages), not allocator bookkeeping. On CUDA it is
  torch.cuda.max_memory_allocated() - memory_allocated() around the step.
* Memory-bandwidth floor, per optimizer: the bytes per fp32 parameter its algorithm must move
  (factored Adafactor: pass 1 reads G and X for the statistics and RMS(X), pass 2 reads G and X
  and writes X, 20 B; Adam/AdamW: read G, read and write X, m, v, 28 B), divided by the copy
  bandwidth measured here with `torch.Tensor.copy_` on 256 MiB buffers (read + write bytes per
  second). "x floor" is the median step time over that floor.
* Load: `os.getloadavg()` before and after the timing, printed with the figures (other processes
  on the machine slow every optimizer alike, since the rounds are interleaved).
* `--compile-timing`: in fresh processes, the time of the first `torch.compile(opt.step)` call of
  ours (compile included) with an empty inductor cache, then again with the cache kept (warm
  start), each minus one uncompiled step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from adafactor import Adafactor, optimizer_state_bytes

VOCAB, D_MODEL, D_FF, LAYERS = 32000, 512, 2048, 6
MIB = 2**20


def transformer_base_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every Transformer-base parameter (nn.Linear weights are (out, in))."""
    d, ff = D_MODEL, D_FF
    shapes: list[tuple[str, tuple[int, ...]]] = [("shared_embedding", (VOCAB, d))]

    def attention(prefix: str) -> None:
        for proj in ("q", "k", "v", "o"):
            shapes.append((f"{prefix}.{proj}.weight", (d, d)))
            shapes.append((f"{prefix}.{proj}.bias", (d,)))

    def ffn_and_norms(prefix: str, norms: int) -> None:
        shapes.extend(
            [
                (f"{prefix}.ffn.in.weight", (ff, d)),
                (f"{prefix}.ffn.in.bias", (ff,)),
                (f"{prefix}.ffn.out.weight", (d, ff)),
                (f"{prefix}.ffn.out.bias", (d,)),
            ]
        )
        for k in range(norms):
            shapes.append((f"{prefix}.norm{k}.weight", (d,)))
            shapes.append((f"{prefix}.norm{k}.bias", (d,)))

    for i in range(LAYERS):
        attention(f"encoder.{i}.self_attn")
        ffn_and_norms(f"encoder.{i}", 2)
    for i in range(LAYERS):
        attention(f"decoder.{i}.self_attn")
        attention(f"decoder.{i}.cross_attn")
        ffn_and_norms(f"decoder.{i}", 3)
    return shapes


def preset_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of this project's `base` model (built on the meta device: no memory)."""
    from models.presets import model_config
    from models.transformer import Transformer

    with torch.device("meta"):
        model = Transformer(model_config("base", vocab_size=32768), pad_id=0)
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def wide_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """One 64 x 262144 matrix: few rows, very many columns."""
    return [("wide", (64, 262144))]


SHAPE_LISTS = {"vaswani": transformer_base_shapes, "preset": preset_shapes, "wide": wide_shapes}


def make_params(
    device: torch.device, seed: int = 0, shapes: str = "vaswani"
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(shape, generator=gen) * 0.02).to(device).requires_grad_()
        for _, shape in SHAPE_LISTS[shapes]()
    ]


def make_grads(device: torch.device, seed: int = 1, shapes: str = "vaswani") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=gen) * 1e-3).to(device) for _, shape in
            SHAPE_LISTS[shapes]()]


def build_optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "ours":
        return Adafactor(params)
    if name == "ours-reference":
        return Adafactor(params, implementation="reference")
    if name == "torch-adafactor":
        return torch.optim.Adafactor(params, foreach=True)
    if name == "hf-adafactor":
        from transformers.optimization import Adafactor as HFAdafactor

        return HFAdafactor(params, lr=None, relative_step=True, scale_parameter=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, foreach=True)
    if name == "adam-fused":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    if name == "adamw-fused":
        return torch.optim.AdamW(params, lr=1e-3, fused=True)
    raise ValueError(f"unknown optimizer {name!r}")


OPTIMIZERS = ("ours", "ours-reference", "torch-adafactor", "hf-adafactor", "adamw",
              "adam-fused", "adamw-fused")
DEFAULT_OPTIMIZERS = ("ours", "ours-reference", "torch-adafactor", "adamw", "adam-fused",
                      "adamw-fused")
# Bytes per fp32 parameter each algorithm must move at least (see the module docstring).
BYTES_PER_PARAM = {"ours": 20, "ours-reference": 20, "torch-adafactor": 20,
                   "hf-adafactor": 20, "adamw": 28, "adam-fused": 28, "adamw-fused": 28}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_step_memory(name: str, device: torch.device, shapes: str = "vaswani") -> float:
    """Peak memory rise (MiB) of one step after a warm-up step; run in a fresh process."""
    params, grads = make_params(device, shapes=shapes), make_grads(device, shapes=shapes)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt = build_optimizer(name, params)
    opt.step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        opt.step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MIB
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = _rss_kib("VmRSS")
    opt.step()
    return (_rss_kib("VmHWM") - before) / 1024


def copy_bandwidth(device: torch.device, mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second read + written by Tensor.copy_ on big buffers."""
    src = torch.ones(mib * MIB // 4, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / min(times)


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up: state allocation, caches
        for _ in range(2):
            step()
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(_time_one(step, device))
    return times


def _time_one(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call: CUDA events on a GPU, the wall clock on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    step()
    return time.perf_counter() - begin


def measure_compile(device: torch.device, shapes: str) -> dict[str, float]:
    """First compiled step of ours minus one eager step (seconds); run in a fresh process."""
    params, grads = make_params(device, shapes=shapes), make_grads(device, shapes=shapes)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt = Adafactor(params)
    opt.step()
    _sync(device)
    eager = _time_one(opt.step, device)
    compiled = torch.compile(opt.step)
    first = _time_one(compiled, device)
    return {"first_compiled_step_s": first, "eager_step_s": eager, "compile_s": first - eager}


def compile_timing(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for label in ("cold (empty inductor cache)", "warm (cache kept)"):
            cmd = [sys.executable, "-m", "experiments.benchmarks.optimizer_step", "--threads",
                   str(args.threads), "--device", args.device, "--shapes", args.shapes,
                   "--compile-only"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            got = json.loads(out.strip().splitlines()[-1])
            first, comp, eager = (got[k] for k in ("first_compiled_step_s", "compile_s",
                                                   "eager_step_s"))
            print(f"torch.compile(ours.step), {label}: first step {first:.1f} s, of which "
                  f"compile {comp:.1f} s (eager step {eager * 1e3:.0f} ms); load {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", choices=sorted(SHAPE_LISTS), default="vaswani")
    parser.add_argument("--optimizers", nargs="+", default=list(DEFAULT_OPTIMIZERS),
                        choices=OPTIMIZERS)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--compile-timing", action="store_true",
                        help="also time the first torch.compile step of ours, cold and warm")
    parser.add_argument("--memory-only", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.memory_only:
        rise = measure_step_memory(args.memory_only, device, args.shapes)
        print(json.dumps({"peak_rise_mib": rise}))
        return
    if args.compile_only:
        print(json.dumps(measure_compile(device, args.shapes)))
        return

    shapes = SHAPE_LISTS[args.shapes]()
    n_params = sum(torch.Size(s).numel() for _, s in shapes)
    print(f"{args.shapes} shapes: {len(shapes)} tensors, {n_params / 1e6:.2f}M parameters; "
          f"device {device}, {args.threads} threads, {args.repeats} interleaved rounds")
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write)")

    grads = make_grads(device, shapes=args.shapes)
    optimizers = {}
    for name in args.optimizers:
        params = make_params(device, shapes=args.shapes)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizers[name] = build_optimizer(name, params)
    load_before = _load()
    times = time_interleaved({n: o.step for n, o in optimizers.items()}, args.repeats, device)
    load_after = _load()
    medians = {n: statistics.median(t) * 1e3 for n, t in times.items()}

    memory: dict[str, float | None] = {n: None for n in optimizers}
    if not args.skip_memory:
        for name in optimizers:
            cmd = [sys.executable, "-m", "experiments.benchmarks.optimizer_step",
                   "--threads", str(args.threads), "--device", args.device,
                   "--shapes", args.shapes, "--memory-only", name]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            memory[name] = json.loads(out.strip().splitlines()[-1])["peak_rise_mib"]

    ours = medians.get("ours")
    print(f"load average {load_before} before, {load_after} after the timing")
    print(f"{'optimizer':<16} {'median ms':>10} {'min ms':>8} {'vs ours':>8} {'B/param':>8} "
          f"{'floor ms':>9} {'x floor':>8} {'state MiB':>10} {'step peak rise MiB':>19}")
    for name, opt in optimizers.items():
        ratio = f"{medians[name] / ours:.2f}x" if ours else "-"
        rise = f"{memory[name]:.1f}" if memory[name] is not None else "-"
        floor_ms = BYTES_PER_PARAM[name] * n_params / bandwidth * 1e3
        print(f"{name:<16} {medians[name]:>10.1f} {min(times[name]) * 1e3:>8.1f} {ratio:>8} "
              f"{BYTES_PER_PARAM[name]:>8} {floor_ms:>9.1f} {medians[name] / floor_ms:>7.2f}x "
              f"{optimizer_state_bytes(opt) / MIB:>10.3f} {rise:>19}")
    if ours:
        for other in ("adam-fused", "adamw-fused", "torch-adafactor", "adamw", "hf-adafactor",
                      "ours-reference"):
            if other in medians:
                print(f"ours / {other}: {ours / medians[other]:.2f}")

    if "ours" in optimizers:
        # Algorithm 4 keeps rows + cols floats per matrix, Algorithm 5 one float per vector
        # entry, plus one 4-byte step counter per tensor (as torch.optim).
        floats = sum(s[0] + s[1] if len(s) == 2 else s[0] for _, s in shapes)
        formula = 4 * floats + 4 * len(shapes)
        print(f"factored-state formula: {floats} floats + {len(shapes)} step counters = "
              f"{formula} bytes ({formula / MIB:.3f} MiB); ours holds "
              f"{optimizer_state_bytes(optimizers['ours'])} bytes")
    if args.compile_timing:
        compile_timing(args)


if __name__ == "__main__":
    main()
