"DAFL's public API as DESIGN.md fixes it, the joint training step and generator files."
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kd_repro.dafl import (DAFL_WEIGHTS, Generator, GeneratorSynthesizer, activation_loss, generator_losses,
                           information_entropy_loss, load_generator, one_hot_loss, save_generator, train_dafl,
                           weighted_loss)
from kd_repro.models import build_model


def test_losses_follow_the_authors_code():
    logits = torch.randn(16, 10)
    assert torch.allclose(one_hot_loss(logits), F.cross_entropy(logits, logits.argmax(1)))
    p = F.softmax(logits, 1).mean(0)
    assert torch.allclose(information_entropy_loss(logits), (p * torch.log10(p)).sum())
    features = torch.randn(16, 84)
    assert torch.allclose(activation_loss(features), -features.abs().mean())


def test_entropy_loss_prefers_balanced_batches():
    balanced = torch.eye(10).repeat(3, 1) * 10
    collapsed = torch.eye(10)[[0] * 30] * 10
    assert information_entropy_loss(balanced) < information_entropy_loss(collapsed)
    assert math.isclose(information_entropy_loss(balanced).item(), -1.0, abs_tol=1e-3)  # −log10(10)


@pytest.mark.parametrize("call,message", [
    (lambda: one_hot_loss(torch.randn(10)), "(batch, classes"),
    (lambda: information_entropy_loss(torch.full((2, 3), float("inf"))), "non-finite"),
    (lambda: activation_loss([1.0, 2.0]), "(batch, ...)"),
    (lambda: weighted_loss(generator_losses(torch.randn(4, 3), torch.randn(4, 2)), {"onehot": 1}), "unknown DAFL"),
    (lambda: Generator()(torch.randn(2, 7)), "(B, 100)"),
    (lambda: train_dafl(build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(8, 4)), 1, batch_size=4,
                        temperature=0.0), "positive finite"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_joint_step_trains_generator_and_student_not_teacher():
    torch.manual_seed(0)
    teacher, student, generator = build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(8, 4))
    teacher.requires_grad_(True)
    snapshot = lambda m: [p.detach().clone() for p in m.parameters()]
    t0, s0, g0 = snapshot(teacher), snapshot(student), snapshot(generator)
    history = train_dafl(teacher, student, generator, 2, batch_size=8)
    assert len(history) == 2 and set(DAFL_WEIGHTS) <= set(history[0])
    assert all(torch.equal(a, b) for a, b in zip(t0, teacher.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(s0, student.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g0, generator.parameters()))
    assert all(p.requires_grad for p in teacher.parameters())  # the caller's flags are restored


def test_generator_file_roundtrip_feeds_distill(tmp_path):
    teacher, generator = build_model("lenet5"), Generator(image_size=28, widths=(8, 4))
    path = save_generator(generator, tmp_path / "g.pt", teacher)
    back = load_generator(path, teacher)
    assert back.config == generator.config
    batches = list(GeneratorSynthesizer(back, batch_size=4, batches_per_epoch=3))
    assert [tuple(b.shape) for b in batches] == [(4, 1, 28, 28)] * 3
    with pytest.raises(ValueError, match="another teacher"):
        load_generator(path, build_model("lenet5"))
    (tmp_path / "bad.pt").write_bytes(b"\x00junk")
    with pytest.raises(ValueError, match="not a readable DAFL generator"):
        load_generator(tmp_path / "bad.pt")
    stale = torch.load(path, weights_only=True)
    stale["state"]["blocks.0.running_mean"] = torch.zeros(8)  # as saved before the batch norms kept no statistics
    torch.save(stale, tmp_path / "stale.pt")
    with pytest.raises(ValueError, match="retrain the generator"):
        load_generator(tmp_path / "stale.pt")


def test_a_cache_of_generators_refuses_one_made_by_other_code(tmp_path):
    teacher, generator = build_model("lenet5"), Generator(image_size=28, widths=(8, 4))
    path = save_generator(generator, tmp_path / "g.pt", teacher)
    assert load_generator(path, teacher, same_code=True).config == generator.config
    older = torch.load(path, weights_only=True)
    older["code"] = "0123456789abcdef"  # as if saved before a change to kd_repro.dafl or kd_repro.train
    torch.save(older, tmp_path / "older.pt")
    assert load_generator(tmp_path / "older.pt", teacher).config == generator.config  # reusable by default
    with pytest.raises(ValueError, match="another version of kd_repro's DAFL code"):
        load_generator(tmp_path / "older.pt", teacher, same_code=True)


def test_activation_loss_reads_the_named_stage():
    "The authors' LeNet-5 puts the activation loss on c5 (`fc1`), not on the classifier's input."
    histories = {}
    for layer in (None, "fc1"):
        torch.manual_seed(0)
        teacher, student, generator = build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(8, 4))
        histories[layer] = train_dafl(teacher, student, generator, 1, batch_size=8, activation_layer=layer)
    assert histories[None][0]["one_hot"] == histories["fc1"][0]["one_hot"]  # same images and teacher
    assert histories[None][0]["activation"] != histories["fc1"][0]["activation"]
    with pytest.raises(ValueError, match="not a stage of the teacher"):
        train_dafl(teacher, student, generator, 1, batch_size=8, activation_layer="c5")


def test_entropy_loss_stays_finite_when_a_class_underflows():
    logits = torch.tensor([[200.0, 0.0, 0.0], [200.0, 0.0, 0.0]], requires_grad=True)  # p̄ of classes 1, 2 is 0.0
    loss = information_entropy_loss(logits)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    p = F.softmax(logits.detach(), 1).mean(0)
    assert torch.isnan((p * torch.log10(p)).sum())  # the authors' formula, for contrast


def plain_dafl_losses(teacher, generator, student, iterations, batch_size, seed, T=1.0):
    "The authors' MNIST iteration written out (their student loss at T = 1): one backward of the summed losses, both Adam optimisers step."
    latent = torch.Generator().manual_seed(seed)
    opt_g, opt_s = torch.optim.Adam(generator.parameters(), 0.2), torch.optim.Adam(student.parameters(), 2e-3)
    teacher.eval()
    history = []
    for _ in range(iterations):
        opt_g.zero_grad()
        opt_s.zero_grad()
        images = generator(torch.randn(batch_size, generator.latent_dim, generator=latent))
        logits, features = teacher(images, return_features=True)
        p = F.softmax(logits, 1).mean(0)
        parts = {"one_hot": F.cross_entropy(logits, logits.argmax(1)), "activation": -features[2].abs().mean(),
                 "entropy": (p * torch.log10(p)).sum()}
        student_loss = T * T * F.kl_div(F.log_softmax(student(images.detach()) / T, 1), F.softmax(logits.detach() / T, 1),
                                        reduction="batchmean")
        (parts["one_hot"] + 0.1 * parts["activation"] + 5 * parts["entropy"] + student_loss).backward()
        opt_g.step()
        opt_s.step()
        history.append({"student": student_loss.item(), **{k: v.item() for k, v in parts.items()}})
    return history


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_train_dafl_forms_the_losses_of_the_authors_loop(T):
    torch.manual_seed(0)
    teacher, student, generator = build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(16, 8))
    initial = copy.deepcopy(generator)
    plain = plain_dafl_losses(teacher, copy.deepcopy(generator), copy.deepcopy(student), 3, 32, seed=5, T=T)
    ours = train_dafl(teacher, student, generator, 3, batch_size=32, activation_layer="fc1", seed=5, temperature=T)
    weight = generator.blocks[2].weight  # trained channels-last, handed back trained in its own layout
    assert weight.is_contiguous() and not torch.equal(weight, initial.blocks[2].weight)
    for a, b in zip(ours, plain, strict=True):
        for name, value in b.items():
            assert math.isclose(a[name], value, rel_tol=1e-3, abs_tol=1e-4), (name, a[name], value)


def test_average_hands_back_the_moving_average_of_the_students_iterates():
    teacher, decay = build_model("lenet5"), 0.8
    iterates, students = [], {}
    for average in (0.0, decay):
        torch.manual_seed(3)
        student = students[average] = build_model("lenet5_half")
        record = (lambda it: iterates.append({k: v.clone() for k, v in students[0.0].state_dict().items()})) \
            if average == 0.0 else None
        train_dafl(teacher, student, Generator(widths=(8, 4)), 3, batch_size=8, average=average, evaluate_every=1,
                   on_evaluate=record)
    averaged = students[decay].state_dict()
    for name, last in iterates[-1].items():
        if last.is_floating_point():
            ema = decay ** 2 * iterates[0][name] + decay * (1 - decay) * iterates[1][name] + (1 - decay) * last
            assert torch.allclose(averaged[name], ema, atol=1e-5), name
    assert any(not torch.allclose(averaged[k], v) for k, v in iterates[-1].items() if v.is_floating_point())  # not the last
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        train_dafl(teacher, build_model("lenet5_half"), Generator(widths=(8, 4)), 2, batch_size=4, average=1.0)
