"""Under `torchrun` (two CPU processes, gloo) the engine trains data-parallel and ends where one process ends."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("distributed_worker.py")


def run_worker(tmp_path, name, processes):
    out = tmp_path / f"{name}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KD_REPRO_CACHE": str(tmp_path / name / "cache"), "KD_REPRO_PROGRESS": "0"}
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                          f"--nproc_per_node={processes}"]
    done = subprocess.run([*launcher, str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=False), tmp_path / name / "cache"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return run_worker(tmp, "one", 1), run_worker(tmp, "two", 2)


def test_two_processes_end_where_one_ends(runs):
    (one, _), (two, _) = runs
    assert one["world"] == 1 and two["world"] == 2
    assert two["student_rows"] * 2 == one["student_rows"] == 2 * 48 + 64  # each rank distilled and evaluated half of every batch
    for net in ("teacher", "student", "cached_teacher", "dafl_student"):
        for name, a in one[net].items():
            torch.testing.assert_close(two[net][name], a, rtol=1e-4, atol=1e-5, msg=f"{net}.{name}")
    for history in ("fit", "distill"):
        assert [r["loss"] for r in two[history]] == pytest.approx([r["loss"] for r in one[history]], rel=1e-4)
    assert two["generated_rows"] * 2 == one["generated_rows"] == 3 * 16  # each rank generated half of every batch
    for loss in ("one_hot", "activation", "entropy", "student"):  # the whole batch's losses
        assert [r[loss] for r in two["dafl_history"]] == pytest.approx([r[loss] for r in one["dafl_history"]], rel=1e-4)
    for name, a in one["first_batch"].items():  # the whole batch, put back together on every rank
        torch.testing.assert_close(two["first_batch"][name], a, rtol=1e-4, atol=1e-5, msg=name)
    for name, a in one["first_step_gradients"].items():  # a share per rank, batch statistics over both
        torch.testing.assert_close(two["first_step_gradients"][name], a, rtol=1e-4, atol=1e-6, msg=name)
    for name, a in two["generator"].items():  # rank 0 wrote it; every rank read it back whole
        torch.testing.assert_close(two["saved_generator"][name], a, rtol=0, atol=0, msg=name)
    assert one["uneven"] is None and "must split evenly over the 2 processes" in two["uneven"]  # a batch of 15
    # The generator's weights are not compared: its Adam at rate 0.2 divides each gradient by its own size, so a
    # weight whose gradient is float noise (a convolution's bias before batch norm: 0 in exact arithmetic) moves
    # ±0.2 on the sign of that noise, in any two runs that sum in another order.
    assert two["evaluate"]["count"] == one["evaluate"]["count"] == 64
    assert two["evaluate"]["accuracy"] == pytest.approx(one["evaluate"]["accuracy"])
    torch.testing.assert_close(two["impressions"], one["impressions"], rtol=1e-4, atol=1e-5)


def test_two_processes_reconstruct_lopes_sets_as_one_with_half_the_rows_each(runs):
    (one, _), (two, _) = runs
    assert "all-layers + fixed dropout" in one["reconstructions"] and len(one["reconstructions"]) == 5
    assert two["reconstructed_rows"] * 2 == one["reconstructed_rows"] == 5 * 3 * 30
    for name, inputs in one["reconstructions"].items():
        assert two["reconstructions"][name].shape == inputs.shape == (30, 1, 4, 4)
        torch.testing.assert_close(two["reconstructions"][name], inputs, rtol=1e-4, atol=1e-5, msg=name)


def test_ranks_train_an_uncached_teacher_once_and_rank_zero_writes_it(runs):
    (one, _), (two, cache) = runs
    assert not one["cached"] and not two["cached"]
    assert len(list((cache / "teachers").glob("*.pt"))) == 1 and not list((cache / "teachers").glob("*.tmp"))


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_a_whole_run_ends(tmp_path):
    def run(mode, out):
        return subprocess.run([sys.executable, str(WORKER), str(out), mode], env={**os.environ, "KD_REPRO_PROGRESS": "0"},
                              capture_output=True, text=True, timeout=300)
    assert run("whole", tmp_path / "whole.pt").returncode == 0
    killed = run("kill", tmp_path / "resumed.pt")
    assert killed.returncode == -9 and not (tmp_path / "resumed.pt").exists()
    assert len(torch.load(tmp_path / "resumed.pt.checkpoint", weights_only=True)["history"]) == 1  # epoch 2 is redone
    assert run("resume", tmp_path / "resumed.pt").returncode == 0
    whole, resumed = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in ("whole", "resumed"))
    assert resumed["history"] == whole["history"]
    for name, value in whole["student"].items():
        torch.testing.assert_close(resumed["student"][name], value, rtol=0, atol=0, msg=name)
