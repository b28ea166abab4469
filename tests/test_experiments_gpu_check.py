"""The prepared GPU check's dry run: every part on CPU at toy sizes, one JSON with every key."""

from __future__ import annotations

import json
import os

from experiments.benchmarks import gpu_check


def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--dry-run", "--parts", "step,throughput,fsdp2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu"
    assert set(gpu_check.PARTS) <= set(report)
    for dtype in ("fp32", "bf16"):
        rows = report["step"][dtype]
        assert set(rows) == set(gpu_check.BYTES)
        assert all(r["step_ms"] > 0 and r["achieved_gb_per_s"] > 0 for r in rows.values())
    assert report["throughput"]["precision"] == "bf16-mixed"
    assert report["throughput"]["bare_tokens_per_s"] > 0
    assert report["throughput"]["lightning_tokens_per_s"] > 0
    assert report["fsdp2"]["world_size"] == 1 and report["fsdp2"]["tokens_per_s"] > 0
    assert report["multi30k"] == {"skipped": "not in --parts"}


def test_unknown_part_is_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--parts", "step,nope", "--out", str(tmp_path / "x.json")])
    assert "unknown part(s) ['nope']" in capsys.readouterr().err


def test_the_fsdp2_part_leaves_no_rendezvous_port_behind(tmp_path, monkeypatch):
    """It set MASTER_PORT=29517 in the caller's environment: every later gloo run of the test
    suite inherited it and failed with EADDRINUSE."""
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    gpu_check.main(["--dry-run", "--parts", "fsdp2", "--out", str(tmp_path / "x.json")])
    assert "MASTER_PORT" not in os.environ and "MASTER_ADDR" not in os.environ
