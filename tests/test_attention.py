"Attention transfer's public API as DESIGN.md fixes it."
import math

import pytest
import torch
import torch.nn.functional as F

from kd_repro.attention import at_kd_loss, at_loss, attention_distance, attention_map
from kd_repro.data import get_dataset
from kd_repro.models import build_model
from kd_repro.train import distill


def authors_at(x):  # szagoruyko/attention-transfer, utils.at
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def test_attention_map_is_the_authors_for_p2_and_unit_norm():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 6)
    assert torch.allclose(attention_map(x), authors_at(x), atol=1e-6)
    assert attention_map(x).shape == (4, 30)
    assert torch.allclose(attention_map(x).norm(dim=1), torch.ones(4))
    assert torch.allclose(attention_map(x, p=4), F.normalize(x.abs().pow(4).mean(1).flatten(1)), atol=1e-6)


def test_attention_map_of_channels_last_features_is_the_same():
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(attention_map(x.to(memory_format=torch.channels_last)), attention_map(x))


def test_at_loss_code_and_paper_forms():
    torch.manual_seed(1)
    s, t = torch.randn(3, 4, 8, 8), torch.randn(3, 16, 8, 8)
    assert math.isclose(at_loss(s, t).item(), (authors_at(s) - authors_at(t)).pow(2).mean().item(), rel_tol=1e-5)
    per_image = (attention_map(s) - attention_map(t)).norm(dim=1)
    assert math.isclose(at_loss(s, t, mode="paper").item(), per_image.mean().item(), rel_tol=1e-5)
    assert at_loss(t, 7 * t).item() == pytest.approx(0.0, abs=1e-7)
    assert at_loss(s, t, mode="paper").item() <= 2 ** 0.5


@pytest.mark.parametrize("s,t,message", [
    (torch.zeros(2, 4, 8, 8), torch.zeros(3, 4, 8, 8), "same batch and spatial size"),
    (torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 4, 4), "same batch and spatial size"),
    (torch.zeros(2, 4), torch.zeros(2, 4), "(batch, channels, height, width)"),
])
def test_at_loss_refuses_mismatched_maps(s, t, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        at_loss(s, t)


def test_at_loss_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        at_loss(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), mode="eq2")


def test_at_kd_loss_combines_its_terms():
    torch.manual_seed(2)
    zs, zt, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    fs = [torch.randn(4, 3, 8, 8), torch.randn(4, 5, 4, 4), torch.randn(4, 5)]
    ft = [torch.randn(4, 6, 8, 8), torch.randn(4, 9, 4, 4), torch.randn(4, 9)]
    at_sum = at_loss(fs[0], ft[0]) + at_loss(fs[1], ft[1])
    assert torch.isclose(at_kd_loss(beta=1000)(zs, zt, y, fs, ft), F.cross_entropy(zs, y) + 1000 * at_sum)
    assert torch.isclose(at_kd_loss(beta=1000)(zs, zt, None, fs, ft), 1000 * at_sum)  # no labels: no CE
    paper = at_loss(fs[0], ft[0], mode="paper") + at_loss(fs[1], ft[1], mode="paper")
    assert torch.isclose(at_kd_loss(beta=10, mode="paper")(zs, zt, None, fs, ft), 5 * paper)
    with pytest.raises(ValueError, match="same number"):
        at_kd_loss()(zs, zt, y, fs[:1], ft)


def test_attention_transfer_moves_the_students_maps_to_the_teachers():
    torch.manual_seed(0)
    images = get_dataset("fashion_mnist", "test", subset="first_1000", size=32)[0].normalized()[:128]
    teacher = build_model("wrn", depth=10, width=1, in_channels=1).eval()
    student = build_model("wrn", depth=10, width=1, in_channels=1)
    before = attention_distance(student, teacher, [images])
    distill(student, teacher, [images[:64], images[64:]] * 10, at_kd_loss(beta=1000), 1, features=True, lr=3e-3)
    after = attention_distance(student, teacher, [images])
    assert all(a < b for a, b in zip(after, before)), (before, after)
    assert attention_distance(teacher, teacher, [images]) == pytest.approx([0.0] * 3, abs=1e-5)
    with pytest.raises(ValueError, match="empty loader"):
        attention_distance(student, teacher, [])
