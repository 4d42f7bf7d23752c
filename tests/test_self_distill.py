"BYOT's multi-exit network, loss and early exit as a user imports them."
import pytest
import torch
import torch.nn.functional as F

from kd_repro.data import get_dataset, get_loader
from kd_repro.models import CifarResNet, build_model
from kd_repro.self_distill import (MultiExitNet, byot_loss, early_exit, ensemble_view, exit_accuracies, exit_costs,
                                   exit_logits, exit_view, last_exit_loss)
from kd_repro.train import evaluate, fit


def _net(seed=0, widths=(4, 8, 16, 32)):
    torch.manual_seed(seed)
    return MultiExitNet(CifarResNet((1, 1, 1, 1), widths, 10, in_channels=1), ["layer1", "layer2", "layer3"],
                        (1, 32, 32), 10)


def authors_byot(outputs, features, labels, alpha=0.3, T=3.0, feature_weight=0.03):
    "The authors' released loss (deepest first there; shallow first here) plus the ICCV feature term."
    teacher, teacher_f = outputs[-1].detach(), features[-1].detach()
    loss = F.cross_entropy(outputs[-1], labels)
    for z, f in zip(outputs[:-1], features[:-1]):
        soft_ce = -(F.log_softmax(z / T, 1) * F.softmax(teacher / T, 1)).sum(1).mean()
        entropy = -(F.log_softmax(teacher / T, 1) * F.softmax(teacher / T, 1)).sum(1).mean()
        loss = loss + alpha * (soft_ce - entropy) + (1 - alpha) * F.cross_entropy(z, labels)
        loss = loss + feature_weight * ((f - teacher_f) ** 2).sum(1).mean()
    return loss


def test_every_exit_sees_features_of_the_deepest_width_and_answers_for_the_classes():
    logits, features = _net()(torch.randn(3, 1, 32, 32))
    assert [z.shape for z in logits] == [(3, 10)] * 4 and [f.shape for f in features] == [(3, 32)] * 4


def test_byot_loss_is_the_authors_with_the_feature_term():
    net, x, y = _net(), torch.randn(6, 1, 32, 32), torch.randint(0, 10, (6,))
    logits, features = net(x)
    assert torch.isclose(byot_loss()((logits, features), y), authors_byot(logits, features, y), atol=1e-5)


def test_the_deepest_exit_teaches_and_is_not_taught():
    net, x, y = _net(), torch.randn(6, 1, 32, 32), torch.randint(0, 10, (6,))
    logits, features = net(x)
    soft_only = byot_loss(alpha=1.0, feature_weight=1.0)((logits, features), y) - F.cross_entropy(logits[-1], y)
    soft_only.backward()
    assert net.backbone.classifier.weight.grad is None or net.backbone.classifier.weight.grad.abs().sum() == 0
    assert net.fcs[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("outputs", [([torch.zeros(2, 10)], [torch.zeros(2, 8)]),
                                     ([torch.zeros(2, 10)] * 2, [torch.zeros(2, 8), torch.zeros(2, 4)]),
                                     ([torch.zeros(3, 10)] * 2, [torch.zeros(3, 8)] * 2)])
def test_byot_loss_refuses_mismatched_exits(outputs):
    with pytest.raises(ValueError):
        byot_loss()(outputs, torch.zeros(2, dtype=torch.long))


def test_multi_exit_net_refuses_unknown_stages():
    with pytest.raises(ValueError, match="exits must name stages"):
        MultiExitNet(build_model("lenet5"), ["layer1"], (1, 32, 32), 10)


def test_shallow_exits_learn_with_byot_and_not_with_the_last_exit_loss():
    train = get_dataset("fashion_mnist", "test", subset="first_1000", size=32)[0]
    loader = get_loader(torch.utils.data.Subset(train, range(512)), 64, seed=0)
    held = get_loader(torch.utils.data.Subset(train, range(512, 1000)), 500, train=False)
    trained = {}
    for name, loss in {"byot": byot_loss(), "last": last_exit_loss}.items():
        net = _net(widths=(8, 16, 32, 64))
        fit(net, loader, 5, lr=3e-3, loss_fn=loss, desc=name)
        trained[name] = [evaluate(exit_view(net, i), held)["accuracy"] for i in range(4)]
    assert trained["byot"][0] > trained["last"][0] + 20, trained  # exit 1 stays untrained without BYOT
    assert min(trained["byot"][-1], trained["last"][-1]) > 50, trained


def test_early_exit_costs_grow_and_thresholds_trade_accuracy_for_compute():
    net = _net().eval()
    costs = exit_costs(net, (1, 32, 32))
    assert costs == sorted(costs) and len(costs) == 4
    images = get_dataset("fashion_mnist", "test", subset="first_1000", size=32)[0]
    logits, labels = exit_logits(net, get_loader(torch.utils.data.Subset(images, range(200)), 100, train=False))
    probs = logits.softmax(-1)
    assert probs.shape == (4, 200, 10)
    everything = early_exit(probs, labels, costs, 1.01)
    assert everything["multiply_adds"] == pytest.approx(costs[-1]) and everything["share_per_exit"][-1] == 1.0
    assert early_exit(probs, labels, costs, 0.0)["multiply_adds"] == pytest.approx(costs[0])
    assert everything["accuracy"] == pytest.approx(exit_accuracies(logits, labels)["exit 4/4"])
    ensemble = (logits.mean(0).argmax(-1) == labels).float().mean().item() * 100
    assert exit_accuracies(logits, labels)["ensemble"] == pytest.approx(ensemble)


def test_views_are_classifiers_for_evaluate():
    net, x = _net(), torch.randn(2, 1, 32, 32)
    assert torch.allclose(ensemble_view(net)(x), torch.stack(net(x)[0]).mean(0))
    assert torch.allclose(exit_view(net, 0)(x), net(x)[0][0])
