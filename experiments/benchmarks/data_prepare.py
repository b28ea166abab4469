"""Benchmark the data path at WMT size: prepare once, then what a cell pays to its first step.

    python -m experiments.benchmarks.data_prepare [--repeat 31] [--vocab-size 32768]
        [--max-len 256] [--max-tokens 4096] [--ranks 2] [--arrow-repeat 3]
        [--baseline-src DIR] [--python PATH] [--work DIR] [--out DIR]

Stand-in corpus: a local "wmt14"-style folder (data.corpora's wmt14 layout): ``train.{en,de}`` =
Multi30k train repeated ``--repeat`` times (29,000 x 31 = 899,000 pairs), ``newstest2013`` =
Multi30k test2016, ``newstest2014`` = the real newstest2014 (when ../shared/data has it).

Every measurement runs in a fresh process (``--child``); time is its wall clock to exit, memory its
peak RSS (``os.wait4``'s ru_maxrss):
- ``prepare`` cold: vocabulary training + binarizing (``python -m reproduce prepare`` does this);
- ``prepare`` with the vocabulary cached (the binarized folder removed): reading + encoding;
- first step: ``TranslationData(...).prepare_data(); setup("fit")``, the first training batch
  and one optimizer step of a small embedding model, reported from process start and from the
  end of the imports (torch, Lightning); with ``--baseline-src DIR`` (an older checkout, e.g.
  ``git archive <commit>``) the same child runs on that code for comparison; each row says what
  the imports alone took and which optional packages they loaded (Lightning imports torchmetrics,
  which imports transformers and matplotlib when installed); ``--python PATH`` runs the
  first-step and rank children in another interpreter (a venv without the test extras);
- ``--ranks N``: N gloo ranks at once (torch.distributed, DDP over the small model, batches
  sharded by rank), peak RSS per rank; ``--rank-rounds K`` starts them K times;
- ``--arrow-repeat K``: on a K-times stand-in, numpy memmap (data.binarized) against Arrow
  (``datasets.map(num_proc)`` + ``save_to_disk``, then ``load_from_disk``): build time and RSS,
  then open + lengths + 2,000 random reads.

The load average before and after goes into ``<out>/data_prepare.json``: on a shared machine the
absolute times are inflated by the load, so compare rows measured together.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- the stand-in


def make_standin(folder: Path, source: Path, repeat: int) -> Path:
    """Write the wmt14-layout folder (train x repeat, newstest2013/2014); reused if complete."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text() == str(repeat):
        return folder
    multi30k = source / "multi30k"
    for lang in ("en", "de"):
        text = (multi30k / f"train.{lang}").read_bytes()
        with (folder / f"train.{lang}").open("wb") as f:
            for _ in range(repeat):
                f.write(text)
        shutil.copyfile(multi30k / f"test2016.{lang}", folder / f"newstest2013.{lang}")
        news = source / "wmt14" / f"newstest2014.{lang}"
        if news.is_file():
            shutil.copyfile(news, folder / f"newstest2014.{lang}")
    marker.write_text(str(repeat))
    return folder


# ----------------------------------------------------------------------------- children


def _child_prepare(a: dict[str, Any]) -> dict[str, Any]:
    from data.binarized import binarize

    built = binarize("wmt14", a["corpus"], vocab_size=a["vocab_size"], cache_dir=a["cache"],
                     max_lens=(a["max_len"],))
    return {"folder": str(built.folder), "built": built.built_here,
            "pairs": built.manifest["splits"]}


def _small_model(vocab_size: int):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(vocab_size, 16), torch.nn.Linear(16, 1))


def _one_step(model, batch: dict, optimizer) -> float:
    loss = model(batch["src"]).pow(2).mean() + model(batch["tgt_in"]).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


# Optional packages that the imports above pull in when installed: Lightning imports torchmetrics,
# which imports transformers (the test extra) and matplotlib. They are part of the import cost.
_OPTIONAL_IMPORTS = ("transformers", "matplotlib", "pandas", "pyarrow", "datasets", "wandb")


def _imports_row(started: float) -> dict[str, Any]:
    """What the imports cost: seconds, peak RSS so far, and the optional packages they loaded."""
    peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text()
                   .splitlines() if line.startswith("VmHWM:"))
    return {"imports_s": round(time.time() - started, 2),
            "imports_peak_rss_gb": round(peak_kb * 1024 / 1e9, 3),
            "optional_imports": [m for m in _OPTIONAL_IMPORTS if m in sys.modules]}


def _child_first_step(a: dict[str, Any]) -> dict[str, Any]:
    started = a["started"]
    import lightning  # noqa: F401  (a cell imports it: count it like a cell does)
    import torch

    from data.datamodule import TranslationData

    imported = time.time()
    imports = _imports_row(started)
    dm = TranslationData("wmt14", corpus_path=a["corpus"], vocab_size=a["vocab_size"],
                         max_tokens=a["max_tokens"], cache_dir=a["cache"], max_len=a["max_len"],
                         eval_max_sentences=200)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = _small_model(dm.vocab.size)
    loss = _one_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1))
    done = time.time()
    return {"from_start_s": done - started, "after_imports_s": done - imported, **imports,
            "batch": list(batch["src"].shape), "loss": loss}


def _child_rank(a: dict[str, Any]) -> dict[str, Any]:
    started = a["started"]
    import lightning  # noqa: F401
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from data.batching import TokenBudgetBatchSampler
    from data.datamodule import PadCollator, TranslationData

    imported = time.time()
    imports = _imports_row(started)
    dist.init_process_group("gloo", timeout=timedelta(seconds=300))  # a dead peer: fail
    rank, world = dist.get_rank(), dist.get_world_size()
    dm = TranslationData("wmt14", corpus_path=a["corpus"], vocab_size=a["vocab_size"],
                         max_tokens=a["max_tokens"], cache_dir=a["cache"], max_len=a["max_len"])
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm._datasets["train"]
    sampler = TokenBudgetBatchSampler(*dataset.padded_lengths(), a["max_tokens"], shuffle=True,
                                      seed=0, rank=rank, world_size=world)
    vocab = dm.vocab
    loader = DataLoader(dataset, batch_sampler=sampler,
                        collate_fn=PadCollator(vocab.pad_id, vocab.bos_id, vocab.eos_id))
    batch = next(iter(loader))
    model = torch.nn.parallel.DistributedDataParallel(_small_model(vocab.size))
    loss = _one_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1))
    done = time.time()
    # DDP's reducer must go before the process group: freed afterwards (when this function
    # returns) it can wait forever on the group's gloo threads (3 hangs in 6 rounds here;
    # none in 25 with this).
    del model
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    return {"rank": rank, "from_start_s": done - started, "after_imports_s": done - imported,
            **imports, "loss": loss}


def _child_arrow_build(a: dict[str, Any]) -> dict[str, Any]:
    import datasets

    from data.corpora import load_corpus
    from data.vocab import SharedVocab

    corpus = load_corpus("wmt14", a["corpus"])
    train = corpus.split("train")
    table = datasets.Dataset.from_dict({"en": train.source, "de": train.target})
    model_path = a["vocab_file"]

    def encode(rows: dict) -> dict:
        vocab = SharedVocab(model_path)
        src, tgt = vocab.encode_batch(rows["en"]), vocab.encode_batch(rows["de"])
        return {"src": src, "tgt": tgt, "src_len": [len(x) for x in src],
                "tgt_len": [len(x) for x in tgt]}

    encoded = table.map(encode, batched=True, batch_size=10_000, num_proc=a["num_proc"],
                        remove_columns=["en"])
    encoded.save_to_disk(a["out"])
    return {"rows": len(encoded)}


def _child_arrow_read(a: dict[str, Any]) -> dict[str, Any]:
    import datasets
    import numpy as np

    started = time.time()
    table = datasets.load_from_disk(a["out"])
    src_len = np.asarray(table["src_len"])
    rng = np.random.default_rng(0)
    total = 0
    for i in rng.integers(0, len(table), 2000).tolist():
        row = table[i]
        total += len(row["src"]) + len(row["tgt"]) + len(row["de"])
    return {"read_s": time.time() - started, "mean_len": float(src_len.mean()), "total": total}


def _child_memmap_read(a: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from data.binarized import binarize

    started = time.time()
    built = binarize("wmt14", a["corpus"], vocab_size=a["vocab_size"], cache_dir=a["cache"])
    train = built.split("train")
    src_len = train.src.lengths()
    rng = np.random.default_rng(0)
    total = 0
    for i in rng.integers(0, len(train), 2000).tolist():
        total += len(train.src[i]) + len(train.tgt[i]) + len(train.references[i])
    return {"read_s": time.time() - started, "mean_len": float(src_len.mean()), "total": total}


CHILDREN = {"prepare": _child_prepare, "first_step": _child_first_step, "rank": _child_rank,
            "arrow_build": _child_arrow_build, "arrow_read": _child_arrow_read,
            "memmap_read": _child_memmap_read}


def _run_child(name: str, args: dict[str, Any], *, pythonpath: Path = REPO,
               env: dict[str, str] | None = None, python: str | None = None) -> subprocess.Popen:
    payload = json.dumps({**args, "started": time.time()})
    # stderr goes to a file (read back when the child fails): a pipe nobody reads could fill up.
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed by _finish)
    # Run as a script, so that with --baseline-src the data code comes from that checkout.
    proc = subprocess.Popen(
        [python or sys.executable, str(Path(__file__).resolve()), "--child", name, payload],
        cwd=pythonpath, stdout=subprocess.PIPE, stderr=errors, text=True,
        env={**os.environ, "PYTHONPATH": str(pythonpath), **(env or {})},
    )
    proc.errors = errors  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen, status: int, usage: Any, started: float) -> dict[str, Any]:
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"child {proc.args[3]} failed with {proc.returncode}: "
                           f"{out[-1000:]}{_stderr_tail(proc, 2000)}")
    proc.errors.close()  # type: ignore[attr-defined]
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall_s=round(time.time() - started, 2),
                  peak_rss_gb=round(usage.ru_maxrss * 1024 / 1e9, 3))
    return result


def _reap(proc: subprocess.Popen, started: float) -> dict[str, Any]:
    _, status, usage = os.wait4(proc.pid, 0)
    return _finish(proc, status, usage, started)


def _reap_all(procs: list[subprocess.Popen], started: float,
              timeout_s: float) -> list[dict[str, Any]]:
    """Reap processes that run together (gloo ranks): if one fails or time runs out, the others
    are killed at once instead of waiting on a peer that is gone."""
    results: dict[int, dict[str, Any]] = {}
    deadline = time.time() + timeout_s
    try:
        while len(results) < len(procs):
            for proc in procs:
                if proc.pid in results:
                    continue
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    results[proc.pid] = _finish(proc, status, usage, started)
            if time.time() > deadline:
                raise RuntimeError(f"{len(procs)} processes run together did not finish in "
                                   f"{timeout_s:.0f} s; the stacks of those still running:\n"
                                   + _stacks_of_running(procs, results))
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.pid not in results and proc.returncode is None:
                proc.kill()
                proc.wait()
    return [results[p.pid] for p in procs]


def _stacks_of_running(procs: list[subprocess.Popen], finished: dict[int, Any]) -> str:
    """SIGUSR1 each child still running (faulthandler prints its stack to its stderr file),
    then return the tail of each one's stderr."""
    running = [p for p in procs if p.pid not in finished]
    for proc in running:
        proc.send_signal(signal.SIGUSR1)
    time.sleep(2)
    return "\n".join(f"--- {proc.args[3]} pid {proc.pid}:\n{_stderr_tail(proc, 3000)}"
                     for proc in running)


def _stderr_tail(proc: subprocess.Popen, chars: int) -> str:
    """The last `chars` characters a child wrote to its stderr file."""
    proc.errors.seek(0)  # type: ignore[attr-defined]
    return proc.errors.read()[-chars:]  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(name: str, args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    started = time.time()
    return _reap(_run_child(name, args, **kwargs), started)


# ----------------------------------------------------------------------------- the benchmark


def _report(label: str, row: dict[str, Any]) -> None:
    """One line: wall time (to exit) and peak RSS; for a first step also the time from process
    start to the step done, which is what a cell waits for."""
    extra = (f", first step done {row['from_start_s']:.2f} s after start"
             if "from_start_s" in row else "")
    extra += "".join(f", {k} {row[k]:.2f} s" for k in ("after_imports_s",) if k in row)
    if "imports_s" in row:
        extra += (f" (imports {row['imports_s']:.2f} s, {row['imports_peak_rss_gb']:.3f} GB, "
                  f"loading {'+'.join(row['optional_imports']) or 'no optional package'})")
    print(f"{label:<44} {row['wall_s']:8.2f} s  {row['peak_rss_gb']:.3f} GB{extra}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    corpus = make_standin(work / f"wmt14-x{args.repeat}", Path(args.source), args.repeat)
    cache = work / "cache"
    common = {"corpus": str(corpus), "cache": str(cache), "vocab_size": args.vocab_size,
              "max_len": args.max_len, "max_tokens": args.max_tokens}
    out: dict[str, Any] = {"load_before": os.getloadavg(), "cpus": os.cpu_count(),
                           "settings": {**vars(args)}, "rows": {}}
    rows = out["rows"]
    if args.fresh and cache.exists():
        shutil.rmtree(cache)
    rows["prepare_cold"] = measure("prepare", common)
    _report("prepare (vocabulary trained + binarized)", rows["prepare_cold"])
    shutil.rmtree(rows["prepare_cold"]["folder"])
    rows["prepare_vocab_cached"] = measure("prepare", common)
    _report("prepare (vocabulary cached)", rows["prepare_vocab_cached"])
    for round_ in range(args.rounds):
        rows[f"first_step_{round_}"] = measure("first_step", common, python=args.python)
        _report(f"first step, this checkout (round {round_})", rows[f"first_step_{round_}"])
        if args.baseline_src:
            rows[f"baseline_first_step_{round_}"] = measure(
                "first_step", common, pythonpath=Path(args.baseline_src), python=args.python)
            _report(f"first step, {args.baseline_src} (round {round_})",
                    rows[f"baseline_first_step_{round_}"])
    if args.ranks > 1:
        for round_ in range(args.rank_rounds):
            env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                   "WORLD_SIZE": str(args.ranks)}
            started = time.time()
            procs = [_run_child("rank", common, env={**env, "RANK": str(r)}, python=args.python)
                     for r in range(args.ranks)]
            ranks = _reap_all(procs, started, timeout_s=args.rank_timeout)
            rows["gloo_ranks" if round_ == 0 else f"gloo_ranks_{round_}"] = ranks
            for r in ranks:
                _report(f"gloo rank {r['rank']} of {args.ranks} (at once, round {round_})", r)
    if args.arrow_repeat:
        small = make_standin(work / f"wmt14-x{args.arrow_repeat}", Path(args.source),
                             args.arrow_repeat)
        small_cache = work / "cache-arrow-compare"
        rows["memmap_build"] = measure("prepare", {**common, "corpus": str(small),
                                                   "cache": str(small_cache)})
        _report(f"memmap build, x{args.arrow_repeat} (incl. vocab)", rows["memmap_build"])
        vocab_file = next(small_cache.glob("spm-*.model"))
        shutil.rmtree(rows["memmap_build"]["folder"])
        rows["memmap_build_vocab_cached"] = measure(
            "prepare", {**common, "corpus": str(small), "cache": str(small_cache)})
        _report(f"memmap build, x{args.arrow_repeat} (vocab cached)",
                rows["memmap_build_vocab_cached"])
        arrow_out = work / f"arrow-x{args.arrow_repeat}"
        shutil.rmtree(arrow_out, ignore_errors=True)
        rows["arrow_build_vocab_cached"] = measure(
            "arrow_build", {"corpus": str(small), "vocab_file": str(vocab_file),
                            "num_proc": args.num_proc, "out": str(arrow_out)})
        _report(f"Arrow map(num_proc={args.num_proc}) + save_to_disk (vocab cached)",
                rows["arrow_build_vocab_cached"])
        rows["memmap_read"] = measure("memmap_read", {**common, "corpus": str(small),
                                                      "cache": str(small_cache)})
        _report("memmap open + lengths + 2000 reads", rows["memmap_read"])
        rows["arrow_read"] = measure("arrow_read", {"out": str(arrow_out)})
        _report("Arrow load_from_disk + lengths + 2000 reads", rows["arrow_read"])
    out["load_after"] = os.getloadavg()
    print(f"load average before {out['load_before']}, after {out['load_after']}")
    return out


def main(argv: list[str] | None = None) -> int:
    # imported here: a --child run with --baseline-src must not need this checkout's modules
    from experiments.scales import SHARED_DATA
    from experiments.store.files import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("payload", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--source", default=str(SHARED_DATA),
                        help="../shared/data (multi30k/, wmt14/)")
    parser.add_argument("--repeat", type=int, default=31)
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rank-rounds", type=int, default=1,
                        help="start the gloo ranks this many times (a teardown hang shows up)")
    parser.add_argument("--rank-timeout", type=float, default=600.0,
                        help="seconds the ranks of one round may take together")
    parser.add_argument("--arrow-repeat", type=int, default=3, help="0: skip the Arrow compare")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--baseline-src", default=None,
                        help="an older checkout to time the same first-step child on")
    parser.add_argument("--python", default=None,
                        help="the interpreter of the first-step and rank children (default: "
                        "this one), e.g. a venv without the test extras, as a user installs")
    parser.add_argument("--fresh", action="store_true", help="empty the cache first")
    parser.add_argument("--work", default="results/benchmarks/data_prepare/work")
    parser.add_argument("--out", default="results/benchmarks/data_prepare")
    args = parser.parse_args(argv)
    if args.child:
        # A hung child (a gloo rank waiting on a peer) prints its Python stack on SIGUSR1: the
        # parent sends it before killing, so a timeout says where the child was stuck.
        faulthandler.register(signal.SIGUSR1)
        result = CHILDREN[args.child](json.loads(args.payload))
        print(json.dumps(result))
        return 0
    if not (Path(args.source) / "multi30k" / "train.en").is_file():
        print(f"error: Multi30k not found under {args.source} (--source)", file=sys.stderr)
        return 2
    out = run(args)
    atomic_write_json(Path(args.out) / "data_prepare.json", out)
    print(f"wrote {Path(args.out) / 'data_prepare.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
