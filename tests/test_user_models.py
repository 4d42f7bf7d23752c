"A user's own network (a plain nn.Module, no `return_features`) through every method that needs features."
import pytest
import torch
from torch import nn

from kd_repro.attention import at_kd_loss, attention_distance
from kd_repro.dafl import Generator, train_dafl
from kd_repro.fsp import fsp_distillation_loss
from kd_repro.lopes import record_spectral, record_statistics
from kd_repro.models import FeatureTap, classifier_input
from kd_repro.self_distill import MultiExitNet
from kd_repro.train import NoiseSynthesizer, distill
from kd_repro.zskd import synthesize_impressions


class SmallCNN(nn.Module):
    "What a user brings: conv blocks and a linear head, a plain forward."
    def __init__(self, width=8):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(2 * width * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.block2(self.block1(x)).flatten(1))


@pytest.fixture
def nets():
    torch.manual_seed(0)
    return SmallCNN(8), SmallCNN(4)


def labelled_batches(n=2):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def test_dafl_trains_a_plain_student_against_a_plain_teacher(nets):
    teacher, student = nets
    before = [p.clone() for p in student.parameters()]
    history = train_dafl(teacher, student, Generator(image_size=32, widths=(16, 8)), 2, batch_size=8)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["activation"])) for h in history)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_zskd_accepts_one_number_for_mean_and_std(nets):
    teacher, _ = nets
    targets = torch.softmax(torch.randn(3, 10), 1)
    images = synthesize_impressions(teacher, targets, (1, 32, 32), mean=0.0, std=1.0, steps=2)
    assert images.shape == (3, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    with pytest.raises(ValueError, match="a number or a sequence of numbers"):
        synthesize_impressions(teacher, targets, (1, 32, 32), mean="zero", std=1.0, steps=1)


def test_feature_losses_need_named_layers_and_work_through_a_tap(nets):
    teacher, student = nets
    with pytest.raises(ValueError, match="FeatureTap"):
        distill(student, teacher, labelled_batches(1), at_kd_loss(beta=10.0), 1, features=True)
    layers = ["block1", "block2"]
    t, s = FeatureTap(teacher, layers), FeatureTap(student, layers)
    history = distill(s, t, labelled_batches(), at_kd_loss(beta=10.0), 1, features=True)
    assert torch.isfinite(torch.tensor(history[0]["loss"]))
    assert len(attention_distance(s, t, labelled_batches(1))) == 2
    distill(FeatureTap(SmallCNN(8), layers), t, labelled_batches(1), fsp_distillation_loss, 1, features=True)


def test_lopes_statistics_through_a_tap_and_a_clear_error_for_spectral_records(nets):
    teacher, _ = nets
    tap = FeatureTap(teacher, ["block2", classifier_input(teacher)])
    g = torch.Generator().manual_seed(0)
    every_class = [(torch.randn(40, 1, 32, 32, generator=g), torch.arange(40) % 10) for _ in range(4)]
    record = record_statistics(tap, every_class, 10)
    assert record["layers"][:2] == ["block2", "fc:input"]
    with pytest.raises(ValueError, match="needs a kd_repro network"):
        record_spectral(tap, labelled_batches(), 10)


def test_byot_exits_on_a_tapped_backbone(nets):
    teacher, _ = nets
    with pytest.raises(ValueError, match="FeatureTap"):
        MultiExitNet(teacher, ["block1"], (1, 32, 32), 10)
    net = MultiExitNet(FeatureTap(teacher, ["block1", "block2"]), ["block1"], (1, 32, 32), 10)
    logits, _ = net(torch.randn(2, 1, 32, 32))
    assert [tuple(z.shape) for z in logits] == [(2, 10), (2, 10)]


def test_noise_synthesizer_serves_a_plain_teacher(nets):
    teacher, student = nets
    kd = lambda zs, zt, y: ((zs - zt) ** 2).mean()
    history = distill(student, teacher, NoiseSynthesizer((1, 32, 32), 8, 2), kd, 1)
    assert history[0]["loss"] > 0
