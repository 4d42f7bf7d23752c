"Hinton et al.'s public API as DESIGN.md fixes it."
import math

import pytest
import torch
import torch.nn.functional as F

from kd_repro.hinton import (bias_for_prediction_rate, combine_specialists, distillation_loss, kd_loss,
                             make_specialist, soft_targets)
from kd_repro.models import build_model


def test_soft_targets_is_tempered_softmax():
    z = torch.randn(5, 7)
    assert torch.allclose(soft_targets(z, 3.0), F.softmax(z / 3.0, -1))
    assert torch.allclose(soft_targets(z, 3.0).sum(-1), torch.ones(5))


def test_kd_loss_matches_its_definition():
    torch.manual_seed(0)
    s, t, T = torch.randn(8, 10), torch.randn(8, 10), 4.0
    p_t, p_s = F.softmax(t / T, -1), F.softmax(s / T, -1)
    expected = T ** 2 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    assert math.isclose(kd_loss(s, t, T).item(), expected.item(), rel_tol=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, t, T).item() > 0


def test_kd_loss_gradient_scale_is_temperature_independent():
    torch.manual_seed(1)
    t = torch.randn(64, 10) * 3
    norms = []
    for T in (4.0, 20.0):
        s = (torch.randn(64, 10) * 3).requires_grad_()
        kd_loss(s, t, T).backward()
        norms.append(s.grad.norm().item())
    assert 0.5 < norms[0] / norms[1] < 2


@pytest.mark.parametrize("s,t,T,message", [
    (torch.zeros(4, 10), torch.zeros(4, 9), 2.0, "same shape"),
    (torch.zeros(4, 10), torch.zeros(3, 10), 2.0, "same shape"),
    (torch.zeros(10), torch.zeros(10), 2.0, "(batch, classes)"),
    (torch.zeros(4, 10), torch.zeros(4, 10), 0.0, "positive finite"),
    (torch.zeros(4, 10), torch.zeros(4, 10), -1.0, "positive finite"),
    (torch.zeros(4, 10), torch.zeros(4, 10), float("inf"), "positive finite"),
])
def test_kd_loss_rejects_bad_input(s, t, T, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kd_loss(s, t, T)


def test_distillation_loss_uses_labels_only_when_given():
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    loss = distillation_loss(4.0, 0.5)
    assert torch.isclose(loss(s, t, None), kd_loss(s, t, 4.0))
    assert torch.isclose(loss(s, t, y), 0.5 * kd_loss(s, t, 4.0) + 0.5 * F.cross_entropy(s, y))


def test_bias_for_prediction_rate_hits_the_rate():
    torch.manual_seed(2)
    z = torch.randn(1000, 10)
    shift = bias_for_prediction_rate(z, 3, 0.25)
    z[:, 3] += shift + 1e-5
    assert abs((z.argmax(1) == 3).float().mean().item() - 0.25) < 0.01


def test_specialist_starts_like_the_generalist():
    general = build_model("lenet5").eval()
    spec = make_specialist(general, [2, 5]).eval()
    x = torch.randn(16, 1, 32, 32)
    with torch.no_grad():
        g, s = general(x), spec(x)
    assert torch.allclose(s[:, :2], g[:, [2, 5]])


def test_combination_without_specialists_is_the_generalist():
    p = F.softmax(torch.randn(6, 4), 1)
    assert torch.allclose(combine_specialists(p, [], [], steps=100), p, atol=2e-3)
