"""Benchmark one optimizer step on Transformer-base parameter shapes (not a test).

    python -m experiments.benchmarks.optimizer_step [--threads 2] [--repeats 15] [--device cpu]

Parameters: the shapes of Transformer base (Vaswani et al.) with one shared 32000 x 512 embedding,
6 encoder and 6 decoder layers, d_model 512, d_ff 2048, attention projections and FFN layers with
biases, two (encoder) or three (decoder) layer norms per layer: 253 tensors, 60.5M parameters.
Gradients are fixed N(0, 1e-3^2) tensors shared by all optimizers (none of them writes to grads).

Optimizers, each with its own copy of the parameters:
  ours          adafactor.Adafactor with the paper's defaults (Algorithm 6: factored, beta1 none,
                beta2hat = 1 - t^-0.8, d = 1, relative step min(1e-2, 1/sqrt t), parameter scale)
  ours-reference  the same, implementation="reference" (the plain per-tensor path)
  torch-adafactor torch.optim.Adafactor(foreach=True) (defaults)
  hf-adafactor  transformers.optimization.Adafactor (relative step, parameter scale, defaults)
  adamw         torch.optim.AdamW(foreach=True, lr=1e-3)

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
* Memory-bandwidth floor: an optimizer must at least read the gradients and read and write the
  parameters (12 bytes per fp32 parameter); the floor is those bytes divided by the copy bandwidth
  measured here with `torch.Tensor.copy_` on 256 MiB buffers (read + write bytes per second).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def make_params(device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(shape, generator=gen) * 0.02).to(device).requires_grad_()
        for _, shape in transformer_base_shapes()
    ]


def make_grads(device: torch.device, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=gen) * 1e-3).to(device) for _, shape in
            transformer_base_shapes()]


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
    raise ValueError(f"unknown optimizer {name!r}")


OPTIMIZERS = ("ours", "ours-reference", "torch-adafactor", "hf-adafactor", "adamw")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_step_memory(name: str, device: torch.device) -> float:
    """Peak memory rise (MiB) of one step after a warm-up step; run in a fresh process."""
    params, grads = make_params(device), make_grads(device)
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
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.memory_only:
        print(json.dumps({"peak_rise_mib": measure_step_memory(args.memory_only, device)}))
        return

    shapes = transformer_base_shapes()
    n_params = sum(torch.Size(s).numel() for _, s in shapes)
    print(f"Transformer-base shapes: {len(shapes)} tensors, {n_params / 1e6:.2f}M parameters; "
          f"device {device}, {args.threads} threads, {args.repeats} interleaved rounds")

    grads = make_grads(device)
    optimizers = {}
    for name in args.optimizers:
        params = make_params(device)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizers[name] = build_optimizer(name, params)
    times = time_interleaved({n: o.step for n, o in optimizers.items()}, args.repeats, device)
    medians = {n: statistics.median(t) * 1e3 for n, t in times.items()}

    memory: dict[str, float | None] = {n: None for n in optimizers}
    if not args.skip_memory:
        for name in optimizers:
            cmd = [sys.executable, "-m", "experiments.benchmarks.optimizer_step",
                   "--threads", str(args.threads), "--device", args.device, "--memory-only", name]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            memory[name] = json.loads(out.strip().splitlines()[-1])["peak_rise_mib"]

    ours = medians.get("ours")
    print(f"{'optimizer':<16} {'median ms':>10} {'min ms':>8} {'vs ours':>8} "
          f"{'state MiB':>10} {'step peak rise MiB':>19}")
    for name, opt in optimizers.items():
        ratio = f"{medians[name] / ours:.2f}x" if ours else "-"
        rise = f"{memory[name]:.1f}" if memory[name] is not None else "-"
        print(f"{name:<16} {medians[name]:>10.1f} {min(times[name]) * 1e3:>8.1f} {ratio:>8} "
              f"{optimizer_state_bytes(opt) / MIB:>10.3f} {rise:>19}")
    if ours:
        for other in ("torch-adafactor", "adamw", "hf-adafactor"):
            if other in medians:
                print(f"ours / {other}: {ours / medians[other]:.2f}")

    if "ours" in optimizers:
        # Algorithm 4 keeps rows + cols floats per matrix, Algorithm 5 one float per vector entry.
        floats = sum(s[0] + s[1] if len(s) == 2 else s[0] for _, s in shapes)
        print(f"factored-state formula: {floats} floats = {4 * floats} bytes "
              f"({4 * floats / MIB:.3f} MiB); ours holds "
              f"{optimizer_state_bytes(optimizers['ours'])} bytes")

    bandwidth = copy_bandwidth(device)
    floor_bytes = 3 * 4 * n_params
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write); floor for reading grads and "
          f"reading + writing params ({floor_bytes / MIB:.0f} MiB): "
          f"{floor_bytes / bandwidth * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
