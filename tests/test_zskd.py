"ZSKD's public API as DESIGN.md fixes it, and the DI transfer-set files."
import pytest
import torch
import torch.nn.functional as F

from kd_repro.models import build_model
from kd_repro.zskd import (class_similarity, concentration, load_impressions, sample_targets, save_impressions,
                           synthesize_impressions)


def test_class_similarity_is_cosine_of_rows():
    w = torch.randn(10, 84)
    expected = F.cosine_similarity(w[:, None, :], w[None, :, :], dim=-1)
    assert torch.allclose(class_similarity(w), expected, atol=1e-5)


def test_concentration_is_rowwise_minmax_times_beta_plus_eps():
    w = torch.randn(10, 84)
    sim = class_similarity(w)
    norm = (sim - sim.min(1, keepdim=True).values) / (sim.max(1, keepdim=True).values - sim.min(1, keepdim=True).values)
    assert torch.allclose(concentration(w, 0.1), norm * 0.1 + 1e-4, atol=1e-6)
    assert torch.allclose(concentration(w, 1.0, eps=0.5), norm + 0.5, atol=1e-6)


@pytest.mark.parametrize("call,message", [
    (lambda: class_similarity(torch.randn(10)), "(classes, features)"),
    (lambda: class_similarity(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])), "non-finite"),
    (lambda: concentration(torch.randn(10, 4), -1.0), "positive"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_targets_are_dirichlet_samples_half_per_beta():
    targets, classes, betas = sample_targets(torch.randn(10, 84), 30, seed=3)
    assert targets.shape == (600, 10) and torch.allclose(targets.sum(1), torch.ones(600), atol=1e-4)
    assert (betas == 1.0).sum() == 300 and (betas == 0.1).sum() == 300
    # β = 0.1 gives peakier vectors than β = 1.0
    assert targets[betas == 0.1].max(1).values.mean() > targets[betas == 1.0].max(1).values.mean()


def test_impressions_move_the_teacher_towards_the_targets(tmp_path):
    torch.manual_seed(0)
    teacher = build_model("lenet5")
    targets, classes, betas = sample_targets(teacher.classifier.weight, 2)
    ce = lambda x: -(targets * F.log_softmax(teacher((x - 0.1307) / 0.3081) / 20, 1)).sum(1).mean().item()
    start = synthesize_impressions(teacher, targets, (1, 32, 32), (0.1307,), (0.3081,), steps=0)
    done = synthesize_impressions(teacher, targets, (1, 32, 32), (0.1307,), (0.3081,), steps=30, lr=0.1)
    assert ce(done) < ce(start) and done.min() >= 0 and done.max() <= 1
    path = save_impressions(tmp_path / "di.pt", done, targets, classes, betas, teacher)
    assert torch.equal(load_impressions(path, teacher, (1, 32, 32))["images"], done)
    with pytest.raises(ValueError, match="another teacher"):
        load_impressions(path, build_model("lenet5"), (1, 32, 32))
    with pytest.raises(ValueError, match="expected"):
        load_impressions(path, teacher, (3, 32, 32))
    torch.save(done, tmp_path / "images_only.pt")  # e.g. a tensor saved by hand
    with pytest.raises(ValueError, match="not a Data Impressions file"):
        load_impressions(tmp_path / "images_only.pt", teacher, (1, 32, 32))
    (tmp_path / "broken.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable"):
        load_impressions(tmp_path / "broken.pt", teacher, (1, 32, 32))
    with pytest.raises(ValueError, match="probability vectors"):
        synthesize_impressions(teacher, torch.ones(3), (1, 32, 32), (0.1307,), (0.3081,), steps=1)


def test_warm_start_continues_within_a_class_and_keeps_one_adam():
    "The authors' synthesis: reset at each new class, otherwise start from the previous batch's optimised images."
    torch.manual_seed(0)
    teacher = build_model("lenet5")
    targets, classes, _ = sample_targets(teacher.classifier.weight, 3, betas=(1.0,))
    ce = lambda x, t: -(t * F.log_softmax(teacher((x - 0.1307) / 0.3081) / 20, 1)).sum(1).mean().item()
    fresh = synthesize_impressions(teacher, targets[:6], (1, 32, 32), (0.1307,), (0.3081,), steps=10, lr=0.1,
                                   batch_size=3)
    warm = synthesize_impressions(teacher, targets[:6], (1, 32, 32), (0.1307,), (0.3081,), steps=10, lr=0.1,
                                  batch_size=3, warm_start=True, classes=classes[:6])
    assert warm.shape == fresh.shape and not torch.equal(warm, fresh)
    assert ce(warm[:3], targets[:3]) < ce(torch.rand(3, 1, 32, 32), targets[:3])
    with pytest.raises(ValueError, match="classes"):
        synthesize_impressions(teacher, targets, (1, 32, 32), (0.1307,), (0.3081,), steps=1, warm_start=True)
