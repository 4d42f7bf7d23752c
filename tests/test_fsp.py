"FSP's public API as DESIGN.md fixes it."
import pytest
import torch
import torch.nn.functional as F

from kd_repro.data import get_dataset
from kd_repro.fsp import FitNetHint, fsp_distillation_loss, fsp_loss, fsp_matrices, fsp_matrix, stage_ends
from kd_repro.models import build_model
from kd_repro.train import distill


def test_fsp_matrix_is_the_papers_sum_over_positions():
    torch.manual_seed(0)
    f1, f2 = torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)
    g = fsp_matrix(f1, f2)
    assert g.shape == (2, 3, 6)
    i, j = 1, 4
    assert torch.isclose(g[1, i, j], (f1[1, i] * f2[1, j]).sum() / 20)


def test_fsp_matrix_does_not_depend_on_the_spatial_size():
    torch.manual_seed(1)
    f1, f2 = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    up = lambda f: F.interpolate(f, scale_factor=2, mode="nearest")
    assert torch.allclose(fsp_matrix(up(f1), up(f2)), fsp_matrix(f1, f2), atol=1e-6)


@pytest.mark.parametrize("f2", [torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 4, 4)])
def test_fsp_matrix_refuses_other_sizes(f2):
    with pytest.raises(ValueError, match="same batch and spatial size"):
        fsp_matrix(torch.zeros(2, 3, 4, 4), f2)


def test_fsp_loss_is_the_mean_over_pairs_of_the_batch_mean_squared_frobenius():
    torch.manual_seed(2)
    a, b = [torch.randn(4, 2, 3), torch.randn(4, 3, 3)], [torch.randn(4, 2, 3), torch.randn(4, 3, 3)]
    expected = sum(((x - y) ** 2).sum(dim=(1, 2)).mean() for x, y in zip(a, b)) / 2
    assert torch.isclose(fsp_loss(a, b), expected)
    with pytest.raises(ValueError, match="same channel widths"):
        fsp_loss([torch.zeros(4, 2, 3)], [torch.zeros(4, 3, 2)])
    with pytest.raises(ValueError, match="same number"):
        fsp_loss(a, b[:1])


def test_stage_ends_max_pool_the_larger_map():
    start, end = torch.arange(16.0).view(1, 1, 4, 4), torch.zeros(1, 2, 2, 2)
    (pooled, same), = stage_ends([start, end, torch.zeros(1, 2)])
    assert torch.equal(pooled, torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]])) and same is end


def test_resnets_of_the_same_widths_have_matching_fsp_matrices():
    x = torch.randn(2, 1, 32, 32)
    shallow, deep = (build_model("cifar_resnet", depth=d, in_channels=1) for d in (8, 20))
    shapes = [[tuple(g.shape) for g in fsp_matrices(m(x, return_features=True)[1])] for m in (shallow, deep)]
    assert shapes[0] == shapes[1] == [(2, 16, 16), (2, 16, 32), (2, 32, 64)]


def _images():
    return get_dataset("fashion_mnist", "test", subset="first_1000", size=32)[0].normalized()[:128]


def test_fsp_stage_one_brings_the_students_matrices_to_the_teachers():
    torch.manual_seed(0)
    images = _images()
    teacher = build_model("cifar_resnet", depth=14, in_channels=1).eval()
    student = build_model("cifar_resnet", depth=8, in_channels=1)

    def distance():  # as in training: the student normalises with its batch statistics
        with torch.no_grad():
            return fsp_distillation_loss(None, None, None, student.train()(images, return_features=True)[1],
                                         teacher(images, return_features=True)[1]).item()
    before = distance()
    distill(student, teacher, [images[:64], images[64:]] * 10, fsp_distillation_loss, 1, features=True, lr=3e-3)
    after = distance()
    assert after < 0.8 * before, (before, after)


def test_fitnet_regressor_is_trained_with_the_student():
    torch.manual_seed(0)
    images = _images()
    teacher = build_model("cifar_resnet", depth=14, in_channels=1).eval()
    student = build_model("cifar_resnet", depth=8, in_channels=1)
    hint = FitNetHint(32, 32, index=2)
    start = hint.regressor.weight.detach().clone()
    with torch.no_grad():
        before = hint(None, None, None, student.train()(images, return_features=True)[1],
                      teacher(images, return_features=True)[1]).item()
    distill(student, teacher, [images[:64], images[64:]] * 10, hint, 1, features=True, lr=3e-3)
    with torch.no_grad():
        after = hint(None, None, None, student.train()(images, return_features=True)[1],
                     teacher(images, return_features=True)[1]).item()
    assert after < before and not torch.equal(hint.regressor.weight, start)
    with pytest.raises(ValueError, match="same spatial size"):
        FitNetHint(16, 32, index=1)(None, None, None, [torch.zeros(1, 16, 8, 8)] * 3, [torch.zeros(1, 32, 4, 4)] * 3)
