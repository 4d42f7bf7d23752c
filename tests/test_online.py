"Deep mutual learning and multi-teacher losses as DESIGN.md fixes them."
import pytest
import torch
import torch.nn.functional as F

from kd_repro.data import get_dataset, get_loader
from kd_repro.hinton import kd_loss
from kd_repro.models import build_model
from kd_repro.online import (Cohort, TeacherEnsemble, dml_losses, ensemble_soft_targets, multi_teacher_loss,
                             mutual_learning_loss, relative_dissimilarity_loss, teacher_votes)
from kd_repro.train import fit


def test_dml_losses_are_ce_plus_the_mean_kl_from_the_other_peers():
    torch.manual_seed(0)
    z, y = [torch.randn(5, 4) for _ in range(3)], torch.randint(0, 4, (5,))
    T = 2.0
    for k, loss in enumerate(dml_losses(z, y, T)):
        kls = [F.kl_div(F.log_softmax(z[k] / T, 1), F.softmax(z[j] / T, 1), reduction="batchmean")
               for j in range(3) if j != k]
        assert torch.isclose(loss, F.cross_entropy(z[k], y) + T * T * sum(kls) / 2, atol=1e-6)


def test_each_dml_loss_moves_only_its_own_peer():
    a, b = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    dml_losses([a, b], torch.tensor([0, 1, 2, 0]))[1].backward()
    assert a.grad is None and b.grad is not None


@pytest.mark.parametrize("logits", [[torch.zeros(4, 3)], [torch.zeros(4, 3), torch.zeros(4, 2)],
                                    [torch.zeros(4, 3), torch.full((4, 3), float("inf"))]])
def test_dml_losses_refuse_bad_peers(logits):
    with pytest.raises(ValueError):
        dml_losses(logits, torch.zeros(4, dtype=torch.long))


def test_ensemble_soft_targets_average_the_softened_outputs():
    z = torch.randn(3, 6, 10)
    p = ensemble_soft_targets(z, 4.0)
    assert torch.allclose(p, F.softmax(z / 4, -1).mean(0)) and torch.allclose(p.sum(1), torch.ones(6))
    with pytest.raises(ValueError, match="of one shape"):
        ensemble_soft_targets([z[0], z[1, :3]], 4.0)


def test_multi_teacher_loss_with_one_teacher_is_hintons_kd():
    torch.manual_seed(1)
    zs, zt, y = torch.randn(8, 10), torch.randn(1, 8, 10), torch.randint(0, 10, (8,))
    expected = 0.9 * kd_loss(zs, zt[0], 4.0) + 0.1 * F.cross_entropy(zs, y)
    assert torch.isclose(multi_teacher_loss(0.9, 4.0)(zs, zt, y), expected, atol=1e-6)


def test_teachers_vote_and_the_student_pays_for_disagreeing():
    near = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [1.0, 0.05]])
    assert teacher_votes([near, near, -near.flip(1)]).tolist() == teacher_votes([near]).tolist()
    agreeing = relative_dissimilarity_loss(near, [near], margin=0.0)
    shuffled = relative_dissimilarity_loss(near[[0, 2, 1, 4, 3]], [near], margin=0.0)
    assert agreeing == 0 and shuffled > 0
    with pytest.raises(ValueError, match="student's batch"):
        relative_dissimilarity_loss(near, [near[:4]])


def test_a_cohort_trains_with_fit_and_its_peers_learn_from_each_other():
    images = get_dataset("fashion_mnist", "test", subset="first_1000", size=32)[0]
    loader = get_loader(torch.utils.data.Subset(images, range(256)), 64, seed=0)
    torch.manual_seed(0)
    cohort = Cohort([build_model("lenet5"), build_model("lenet5")])
    x, y = next(iter(loader))

    def disagreement():
        with torch.no_grad():
            a, b = cohort(x)
        return F.kl_div(F.log_softmax(a, 1), F.softmax(b, 1), reduction="batchmean").item()
    before = disagreement()
    fit(cohort, loader, 3, lr=0.01, optimizer="sgd", loss_fn=mutual_learning_loss())
    assert disagreement() < before


def test_teacher_ensemble_stacks_logits_and_passes_features():
    torch.manual_seed(0)
    ensemble = TeacherEnsemble([build_model("lenet5"), build_model("lenet5")])
    x = torch.randn(3, 1, 32, 32)
    logits, features = ensemble(x, return_features=True)
    assert logits.shape == (2, 3, 10) and len(features) == 2 and torch.equal(ensemble(x), logits)
    with pytest.raises(ValueError, match="at least one teacher"):
        TeacherEnsemble([])
