"The data-free benchmark's common ground: balanced subsets, cached synthetic sets, the shared method registries."
import pytest
import torch

from kd_repro.benchmark import CACHE, class_balanced, retention
from kd_repro.lopes import NOISE_METHOD, metadata_records, method_inputs, reconstruction_objectives
from kd_repro.models import MLP, build_model
from kd_repro.train import cached_inputs
from kd_repro.zskd import SETTINGS as ZSKD, cached_impressions, sample_targets


def test_class_balanced_takes_the_same_number_per_class_and_nests():
    classes = torch.arange(10).repeat_interleave(7)[torch.randperm(70, generator=torch.Generator().manual_seed(0))]
    small, large = class_balanced(classes, 20), class_balanced(classes, 50)
    assert torch.bincount(classes[small]).tolist() == [2] * 10
    assert set(small.tolist()) <= set(large.tolist())  # a smaller count is a subset of a larger one
    with pytest.raises(ValueError, match="multiple of 10"):
        class_balanced(classes, 25)
    with pytest.raises(ValueError, match="cannot take 80"):
        class_balanced(classes, 80)


def test_cached_inputs_runs_once_per_teacher_and_recipe_and_remakes_a_broken_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path))
    calls = []

    def make():
        calls.append(1)
        return {"inputs": torch.full((2, 1), float(len(calls)))}

    teacher, other = build_model("lenet5"), build_model("lenet5_half")
    first, seconds, cached = cached_inputs("x", teacher, {"steps": 1}, make, CACHE)
    again, _, cached_again = cached_inputs("x", teacher, {"steps": 1}, make, CACHE)
    assert (cached, cached_again, len(calls)) == (False, True, 1) and seconds >= 0
    assert torch.equal(first["inputs"], again["inputs"])
    cached_inputs("x", other, {"steps": 1}, make, CACHE)
    assert len(calls) == 2  # another teacher
    for f in (tmp_path / CACHE).iterdir():
        f.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        cached_inputs("x", teacher, {"steps": 1}, make, CACHE)
    assert len(calls) == 3
    assert retention(45.0, 90.0) == 50.0


def test_lopes_registry_gives_every_method_inputs_of_the_asked_shape():
    torch.manual_seed(0)
    teacher = MLP((16,), dropout=0.5, input_shape=(1, 6, 6)).eval()
    loader = [(torch.randn(50, 1, 6, 6), torch.arange(50) % 10)]
    records = metadata_records(teacher, loader, 10, T=8.0, keep=0.5)
    classes = torch.arange(10).repeat_interleave(3)
    methods = reconstruction_objectives(teacher, records, classes, torch.Generator().manual_seed(0))
    assert "all-layers + fixed dropout" in methods and NOISE_METHOD in methods
    for name, (fn, _) in methods.items():
        x = method_inputs(teacher, name, fn, classes, (1, 6, 6), [0.0], [1.0], steps=3,
                          generator=torch.Generator().manual_seed(0))
        assert x.shape == (30, 1, 6, 6) and torch.isfinite(x).all()


def test_cached_impressions_are_synthesised_once_per_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path))
    teacher = build_model("lenet5")
    settings = ZSKD.__class__(per_class=1, steps=2, synthesis_batch=8)
    targets, classes, betas = sample_targets(teacher.classifier.weight, 1, seed=0)
    record, cached, _ = cached_impressions(teacher, "mnist", settings, 0, targets, classes, betas)
    again, cached_again, _ = cached_impressions(teacher, "mnist", settings, 0, targets, classes, betas)
    assert (cached, cached_again) == (False, True) and torch.equal(record["images"], again["images"])
    assert record["images"].shape == (len(targets), 1, 32, 32)
