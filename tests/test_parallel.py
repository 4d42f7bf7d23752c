"Processes sharing a cache: a teacher or a synthetic set asked for by two at once is made once, never read half-written."
import multiprocessing as mp

import torch

from kd_repro.train import cached_inputs


def _teacher(cache: str, results):
    import os
    os.environ["KD_REPRO_CACHE"] = cache
    from kd_repro.train import train_teacher
    _, info = train_teacher("hinton_student", "mnist", epochs=1, size=28, profile="smoke", train_limit=128,
                            test_limit=64)
    results.put(info["cached"])


def test_two_processes_asking_for_one_uncached_teacher_train_it_once(tmp_path):
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_teacher, args=(str(tmp_path), results)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in workers) == [False, True]  # one trained it, the other loaded it
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 1


def test_cached_inputs_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path))
    teacher = torch.nn.Linear(2, 2)
    cached_inputs("x", teacher, {"n": 1}, lambda: {"inputs": torch.ones(3, 2)})
    assert [p.suffix for p in (tmp_path / "synthetic").iterdir() if p.suffix != ".lock"] == [".pt"]
