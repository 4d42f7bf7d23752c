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


# The float64 runs (see distributed_worker.py) agree to ~1e-12 relative: rounding (1e-16) grown over a few steps.
# A rank that saw the wrong rows or batch statistics over its share alone moves a weight by ~1e-3 or more.
F64 = dict(rtol=1e-7, atol=1e-9)
# Adam moves a weight whose exact gradient is 0 by lr * noise / eps per step (noise ~1e-15 in float64, eps 1e-8):
# at most ~1e-7 for DAFL's generator (lr 0.2, 3 steps), against ~0.2 for such a weight in float32.
GENERATOR_F64 = dict(rtol=1e-7, atol=1e-6)


def test_two_processes_end_where_one_ends(runs):
    (one, _), (two, _) = runs
    assert one["world"] == 1 and two["world"] == 2
    assert two["student_rows"] * 2 == one["student_rows"] == 2 * 48 + 64  # each rank distilled and evaluated half of every batch
    for net, tolerance in (("teacher", F64), ("student", F64), ("dafl_student", F64), ("generator", GENERATOR_F64)):
        for name, a in one[net].items():
            assert a.dtype == torch.float64 or not a.is_floating_point()
            torch.testing.assert_close(two[net][name], a, **tolerance, msg=f"{net}.{name}")
    for name, a in one["cached_teacher"].items():  # float32, trained by one rank and read by both
        torch.testing.assert_close(two["cached_teacher"][name], a, rtol=1e-5, atol=1e-7, msg=f"cached_teacher.{name}")
    for history in ("fit", "distill"):
        assert [r["loss"] for r in two[history]] == pytest.approx([r["loss"] for r in one[history]], rel=1e-9)
    assert two["generated_rows"] * 2 == one["generated_rows"] == 3 * 16  # each rank generated half of every batch
    for loss in ("one_hot", "activation", "entropy", "student"):  # the whole batch's losses
        assert [r[loss] for r in two["dafl_history"]] == pytest.approx([r[loss] for r in one["dafl_history"]], rel=1e-9)
    for name, a in one["first_batch"].items():  # the whole batch, put back together on every rank
        torch.testing.assert_close(two["first_batch"][name], a, **F64, msg=name)
    for name, a in one["first_step_gradients"].items():  # a share per rank, batch statistics over both
        assert a.dtype == torch.float64
        torch.testing.assert_close(two["first_step_gradients"][name], a, **F64, msg=name)
    for name, a in two["generator"].items():  # rank 0 wrote it; every rank read it back whole
        torch.testing.assert_close(two["saved_generator"][name], a, rtol=0, atol=0, msg=name)
    assert one["uneven"] is None and "must split evenly over the 2 processes" in two["uneven"]  # a batch of 15
    assert two["evaluate"]["count"] == one["evaluate"]["count"] == 64
    assert two["evaluate"]["accuracy"] == pytest.approx(one["evaluate"]["accuracy"])
    torch.testing.assert_close(two["impressions"], one["impressions"], **F64)


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
