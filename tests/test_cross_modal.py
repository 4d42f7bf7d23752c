"Supervision transfer across modalities as DESIGN.md fixes it."
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_repro.cross_modal import (ModalityView, SupervisionTransfer, low_resolution, modality_dataset, paired_inputs,
                                  sobel_edges, supervision_transfer_loss, with_teacher_head)
from kd_repro.data import ImageDataset, get_dataset
from kd_repro.models import build_model
from kd_repro.train import TransferSet, distill


def test_supervision_transfer_loss_is_the_mse_to_the_detached_teacher_through_the_adapter():
    torch.manual_seed(0)
    s, t = torch.randn(4, 8, 5, 5), torch.randn(4, 16, 5, 5, requires_grad=True)
    adapter = nn.Conv2d(8, 16, 1)
    loss = supervision_transfer_loss(s, t, adapter)
    assert torch.isclose(loss, ((adapter(s) - t) ** 2).mean())
    loss.backward()
    assert t.grad is None and adapter.weight.grad is not None
    assert torch.isclose(supervision_transfer_loss(t.detach(), t.detach() + 3), torch.tensor(9.0))


@pytest.mark.parametrize("student, teacher, message", [
    (torch.randn(4, 8), torch.randn(4, 16), "pass an adapter"),
    (torch.randn(3, 8), torch.randn(4, 8), "same batch"),
    (torch.randn(8), torch.randn(8), "(B, ...)"),
    ([1.0], torch.randn(4, 8), "(B, ...)"),
])
def test_supervision_transfer_loss_refuses_mismatched_features(student, teacher, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        supervision_transfer_loss(student, teacher)


def test_edges_keep_the_outline_and_drop_the_fill():
    square = torch.zeros(1, 1, 12, 12)
    square[..., 3:9, 3:9] = 1.0
    edges = sobel_edges(square)
    assert edges[0, 0, 5:7, 5:7].abs().max() == 0  # inside the flat square: no edge
    assert edges[0, 0, 5, 2:4].min() > 0.5  # at its border: strong edges
    inner = (..., slice(1, -1), slice(1, -1))  # away from the zero padding at the border
    assert sobel_edges(1 - square)[inner].allclose(edges[inner])  # contrast polarity is lost, as depth loses colour
    assert low_resolution(square, 2).shape == square.shape


def test_modality_dataset_keeps_pairs_and_carries_the_training_statistics():
    images = ImageDataset(torch.rand(10, 1, 8, 8), torch.arange(10), [0.5], [0.25])
    train_edges = modality_dataset(images, "edges")
    assert torch.equal(train_edges.labels, images.labels)
    assert abs(train_edges.normalized().mean()) < 1e-5 and abs(train_edges.normalized().std() - 1) < 1e-2
    test_edges = modality_dataset(ImageDataset(torch.rand(3, 1, 8, 8), torch.arange(3), [0.5], [0.25]), "edges",
                                  stats=train_edges)
    assert test_edges.normalize.mean == train_edges.normalize.mean
    pairs = paired_inputs(train_edges, images)
    assert pairs.shape == (10, 2, 8, 8) and torch.allclose(pairs[:, :1], train_edges.normalized())
    with pytest.raises(ValueError, match="choose from"):
        modality_dataset(images, "thermal")
    with pytest.raises(ValueError, match="same images in the same order"):
        paired_inputs(train_edges, ImageDataset(images.images[:5], images.labels[:5], [0.5], [0.25]))


def test_with_teacher_head_runs_the_students_layers_then_the_teachers():
    torch.manual_seed(0)
    student, teacher = build_model("lenet5"), build_model("lenet5")
    x = torch.randn(2, 1, 32, 32)
    mixed = with_teacher_head(student, teacher, "conv1")
    _, s_feats = student(x, return_features=True)
    expected = teacher.classifier(teacher.stages["fc2"](teacher.stages["fc1"](teacher.stages["conv2"](s_feats[0]))))
    assert torch.allclose(mixed(x), expected)
    mixed.stages["conv2"][0].weight.data.zero_()
    assert teacher.stages["conv2"][0].weight.abs().sum() > 0  # a copy: fine-tuning it leaves the teacher alone
    with pytest.raises(ValueError, match="FeatureNet with a stage"):
        with_teacher_head(nn.Linear(2, 2), teacher, "conv1")


def test_supervision_transfer_trains_a_student_of_the_other_modality_toward_the_teachers_features():
    images, _ = get_dataset("fashion_mnist", "train", profile="smoke", size=32, limit=256)
    edges = modality_dataset(images, "edges")
    pairs = paired_inputs(edges, images)
    torch.manual_seed(0)
    teacher, student = build_model("lenet5").eval(), build_model("lenet5")
    layer = student.feature_names.index("conv2")

    def gap():
        with torch.no_grad():
            return F.mse_loss(student(pairs[:, :1], return_features=True)[1][layer],
                              teacher(pairs[:, 1:], return_features=True)[1][layer]).item()

    before = gap()
    distill(ModalityView(student, slice(0, 1)), ModalityView(teacher, slice(1, 2)), TransferSet(pairs, 64),
            SupervisionTransfer(layer), 3, lr=3e-3, features=True)
    assert gap() < 0.5 * before
