"`kd_repro gpu-check` on a machine without CUDA: it says so, runs the same paths on the CPU, writes its results and exits 0."
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kd_repro.core import load_results


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: `make gpu-check` checks the GPU itself")
def test_gpu_check_without_cuda_runs_the_cpu_paths_and_exits_0(tmp_path):
    cli = Path(sys.executable).parent / "kd_repro"
    done = subprocess.run([str(cli), "gpu-check", "--out", str(tmp_path), "--notebook", "train", "--dafl-batch", "32",
                           "--dafl-iterations", "1"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KD_REPRO_PROGRESS": "0"})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "CUDA is not available here" in done.stdout
    record = load_results(tmp_path / "quick" / "results" / "gpu_check_cpu.json")
    assert record["device"] == "cpu" and record["notebook"] == "gpu_check_cpu"
    rows = {r["row"]: r for r in record["rows"]}
    assert len(rows) == 7 and all(r["passed"] and r["error"] is None and r["reproduced"] > 0 for r in rows.values())
    assert rows["one-rank gloo process group through kd_repro's rank helpers"]["backend"] == "gloo"
    assert rows["fit: LeNet-5 on 1,000 Fashion-MNIST images, 4 epochs"]["accuracy_%"] > 40
    lopes = rows["Lopes reconstruction: top-layer statistics, 40 images, 30 steps"]
    assert lopes["objective_after"] < lopes["objective_before"]
    speed = next(r for name, r in rows.items() if name.startswith("DAFL iteration"))
    assert speed["speedup"] == pytest.approx(speed["authors_loop_s"] / speed["train_dafl_s"])
    assert rows["notebook train"]["device"] == "cpu" and rows["notebook train"]["profile"] == "smoke"
    assert "7 of 7 paths passed" in done.stdout


def test_a_failing_path_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    from kd_repro import performance
    monkeypatch.setattr(performance, "_check_lopes", lambda *a: 1 / 0)
    lines = []
    checked = performance.gpu_check(tmp_path, notebook=None, dafl_batch=16, dafl_iterations=1, log=lines.append)
    assert checked["failed"] == ["Lopes reconstruction: top-layer statistics, 40 images, 30 steps"]
    failed = next(r for r in checked["rows"] if not r["passed"])
    assert failed["error"] == "ZeroDivisionError: division by zero" and failed["reproduced"] is None
    assert len(checked["rows"]) == 6 and any(l.startswith("  FAILED Lopes") for l in lines)
    assert json.loads(Path(checked["path"]).read_text())["rows"][4]["passed"] is False
