"The engine: fit/distill on real digits, cached teachers, determinism, bad input."
import warnings

import pytest
import torch
import torch.nn.functional as F

from kd_repro import data
from kd_repro.core import seed_everything
from kd_repro.data import get_dataset, get_loader
from kd_repro.models import build_model
from kd_repro.train import (NoiseSynthesizer, TransferSet, channels_last, distill, evaluate, fit, make_schedule,
                            optimise_inputs, step_decay, train_teacher, trained_student)


@pytest.fixture(scope="module")
def digits():
    ds, _ = get_dataset("digits")
    return torch.utils.data.random_split(ds, [1500, 297], torch.Generator().manual_seed(0))


def soft(s, t, y):
    return F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean")


def _trained(digits, seed):
    seed_everything(seed)
    model = build_model("hinton_student")
    fit(model, get_loader(digits[0], 64, seed=seed), 2)
    return evaluate(model, get_loader(digits[1], 300, train=False))


def test_same_seed_same_accuracy_to_the_last_digit(digits):
    a, b = _trained(digits, 0), _trained(digits, 0)
    assert a == b and a["accuracy"] > 80


def test_distill_from_a_synthesizer_learns_something(digits):
    seed_everything(0)
    teacher = build_model("hinton_student")
    fit(teacher, get_loader(digits[0], 64), 2)
    student = build_model("hinton_student")
    images = torch.stack([digits[0][i][0] for i in range(len(digits[0]))])
    distill(student, teacher, TransferSet(images, 64), soft, 2)
    acc = evaluate(student, get_loader(digits[1], 300, train=False))["accuracy"]
    assert acc > 70  # labels were never seen: only the teacher's outputs on the images


def test_noise_synthesizer_and_bad_sources(digits):
    student, teacher = build_model("hinton_student"), build_model("hinton_student")
    hist = distill(student, teacher, NoiseSynthesizer((1, 28, 28), 8, 2), soft, 1)
    assert len(hist) == 1 and hist[0]["loss"] >= 0
    with pytest.raises(ValueError, match="source must be"):
        distill(student, teacher, 5, soft)
    with pytest.raises(ValueError, match="needs labelled batches"):
        evaluate(student, [torch.zeros(2, 1, 28, 28)])
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(student, get_loader(digits[0], 64), 1, optimizer="lbfgs")


def test_teacher_cache_hit_and_corrupt_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path))
    kwargs = dict(epochs=1, train_limit=256, test_limit=256, size=32, seed=0, profile="smoke")
    first, info1 = train_teacher("lenet5", "fashion_mnist", **kwargs)
    second, info2 = train_teacher("lenet5", "fashion_mnist", **kwargs)
    assert not info1["cached"] and info2["cached"] and info2["test_accuracy"] == info1["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    path = tmp_path / "teachers" / info1["path"].split("/")[-1]
    path.write_bytes(path.read_bytes()[:200])  # a crash mid-copy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third, info3 = train_teacher("lenet5", "fashion_mnist", **kwargs)
    assert not info3["cached"] and any("unusable" in str(w.message) for w in caught)
    assert info3["test_accuracy"] == info1["test_accuracy"]  # retrained identically
    _, other = train_teacher("lenet5", "fashion_mnist", **{**kwargs, "seed": 1})
    assert other["path"] != info1["path"]


def test_teacher_trained_with_a_step_schedule_loads_from_the_cache(tmp_path, monkeypatch):
    "A schedule object in the training record must not make the checkpoint unloadable (it did: retrained every run)."
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path))
    kwargs = dict(epochs=1, train_limit=128, test_limit=128, size=32, seed=0, profile="smoke", optimizer="sgd", lr=0.01,
                  schedule=step_decay(0.5, gamma=0.2))
    _, first = train_teacher("lenet5", "fashion_mnist", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unusable checkpoint warns
        _, second = train_teacher("lenet5", "fashion_mnist", **kwargs)
    assert not first["cached"] and second["cached"]
    assert second["hyperparameters"]["schedule"] == "StepDecay(fractions=(0.5,), gamma=0.2)"


@pytest.mark.parametrize("fractions, expected", [((0.5,), [1.0] * 2 + [0.1] * 2), ((0.25, 0.75), [1.0, 0.1, 0.1, 0.01]),
                                                 ((), [1.0] * 4)])
def test_step_decay_drops_at_its_fractions(fractions, expected):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_schedule(opt, step_decay(*fractions), 4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected)


def test_step_decay_refuses_fractions_outside_the_run():
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        step_decay(0.5, 1.0)


def test_trained_student_is_seeded_and_needs_a_loss_to_distill(digits):
    valid = get_loader(digits[1], 300, train=False)
    first = trained_student("hinton_student", get_loader(digits[0], 64), valid, 1, seed=3)
    assert first[0] == trained_student("hinton_student", get_loader(digits[0], 64), valid, 1, seed=3)[0]
    train = get_loader(digits[0], 64)
    assert first[0] > 50 and first[1] > 0
    teacher = build_model("hinton_student")
    fit(teacher, train, 2)
    unlabelled = TransferSet(torch.stack([x for x, _ in digits[0]]), 64, seed=3)
    taught, _ = trained_student("hinton_student", unlabelled, valid, 1, teacher=teacher, loss_fn=soft, seed=3)
    assert taught > 50  # learned from the teacher alone: the source has no labels
    with pytest.raises(ValueError, match="loss_fn"):
        trained_student("hinton_student", train, valid, 1, teacher=teacher)


def test_teacher_cache_is_keyed_by_the_images_not_their_source(tmp_path, monkeypatch):
    "The same images from a data folder (raw idx files) and from the package give the same cached teacher."
    monkeypatch.setenv("KD_REPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KD_REPRO_DATA", raising=False)
    data._load.cache_clear()
    kwargs = dict(epochs=1, train_limit=128, test_limit=128, size=32, seed=0, profile="smoke")
    _, shipped = train_teacher("lenet5", "fashion_mnist", **kwargs)
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for split, stem in (("train", "train"), ("test", "t10k")):
        images, labels, _ = data.from_shipped("fashion_mnist", split, "first_1000")
        data.write_idx(folder / f"{stem}-images-idx3-ubyte", images)
        data.write_idx(folder / f"{stem}-labels-idx1-ubyte", labels)
    monkeypatch.setenv("KD_REPRO_DATA", str(tmp_path / "data"))
    data._load.cache_clear()
    _, from_folder = train_teacher("lenet5", "fashion_mnist", **kwargs)
    data._load.cache_clear()
    assert shipped["data"]["train"]["source"] == "shipped with kd_repro"
    assert from_folder["cached"] and from_folder["path"] == shipped["path"]


def test_optimise_inputs_runs_the_teacher_channels_last_and_gives_it_back_unchanged():
    torch.manual_seed(0)
    teacher = build_model("lenet5").eval()
    strides = [p.stride() for p in teacher.parameters()]
    seen = []

    def objective(x):
        seen.append(teacher.stages.conv2[0].weight.is_contiguous(memory_format=torch.channels_last))
        return teacher(x).logsumexp(1)

    optimise_inputs(teacher, objective, torch.randn(4, 1, 32, 32), 2, 0.1)
    assert seen == [True, True]
    assert [p.stride() for p in teacher.parameters()] == strides  # weight.view works again afterwards
    assert teacher.stages.conv2[0].weight.view(16, -1).shape == (16, 150)
    x = torch.randn(3, 1, 32, 32)
    with channels_last(teacher):
        inside = teacher(x)
    assert torch.allclose(inside, teacher(x), atol=1e-5)
