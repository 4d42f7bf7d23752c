"""The shared engine (one input optimiser, DAFL through `distill`) computes exactly what the separate loops it replaced did,
written out here in the layout the engine uses (channels-last generator, students and frozen teachers)."""
import torch
import torch.nn.functional as F

from kd_repro.dafl import DAFL_WEIGHTS, Generator, generator_losses, train_dafl, weighted_loss
from kd_repro.data import to_inputs
from kd_repro.hinton import combine_specialists, kd_loss
from kd_repro.lopes import Objective, layer_activations, noise_inputs, reconstruct_inputs, top_layer_objective, record_statistics
from kd_repro.models import build_model
from kd_repro.train import channels_last
from kd_repro.zskd import _minmax, sample_targets, synthesize_impressions

MNIST = ((0.1307,), (0.3081,))


def bare_dafl(teacher, student, generator, iterations, batch_size, seed=0):
    "The authors' iteration written out: one backward of the sum, both optimisers step (the loop `train_dafl` replaced)."
    generator.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(generator.parameters(), lr=0.2)
    opt_s = torch.optim.Adam(student.parameters(), lr=2e-3)
    latent = torch.Generator().manual_seed(seed)
    teacher.eval().requires_grad_(False)
    student.train()
    with channels_last(teacher), channels_last(student):
        for _ in range(iterations):
            images = generator(torch.randn(batch_size, generator.latent_dim, generator=latent))
            logits, features = teacher(images, return_features=True)
            parts = generator_losses(logits, features[-1])
            student_loss = kd_loss(student(images.detach()), logits.detach(), 1.0)
            opt_g.zero_grad(); opt_s.zero_grad()
            (weighted_loss(parts, DAFL_WEIGHTS) + student_loss).backward()
            opt_g.step(); opt_s.step()


def models(seed):
    torch.manual_seed(seed)
    return build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(8, 4))


def test_train_dafl_through_distill_matches_the_joint_loop():
    teacher, student, generator = models(0)
    _, student_ref, generator_ref = models(0)
    history = train_dafl(teacher, student, generator, 4, batch_size=8, evaluate_every=2)
    bare_dafl(teacher, student_ref, generator_ref, 4, 8)
    for mine, ref in ((student, student_ref), (generator, generator_ref)):
        for a, b in zip(mine.state_dict().values(), ref.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [h["iteration"] for h in history] == [1, 2, 3, 4] and set(DAFL_WEIGHTS) <= set(history[0])


def test_reconstruct_inputs_is_the_adam_loop_on_inputs():
    torch.manual_seed(0)
    teacher = build_model("lenet5").eval()
    stats = record_statistics(teacher, [(torch.randn(40, 1, 32, 32), torch.arange(40) % 10)], 10)
    classes = torch.arange(10)
    objective = Objective(top_layer_objective(stats, classes, torch.Generator().manual_seed(1)), 8.0)
    mine = reconstruct_inputs(teacher, objective, classes, (1, 32, 32), *MNIST, steps=5, lr=0.05,
                              generator=torch.Generator().manual_seed(2))
    x = noise_inputs(10, (1, 32, 32), *MNIST, torch.Generator().manual_seed(2)).requires_grad_()
    opt = torch.optim.Adam([x], lr=0.05)
    with channels_last(teacher):
        for _ in range(5):
            loss = objective(layer_activations(teacher, x, 8.0)).sum()
            opt.zero_grad(); loss.backward(); opt.step()
    assert torch.equal(mine, x.detach())


def bare_impressions(teacher, targets, steps, lr, batch_size, seed):
    "ZSKD's loop written out: each batch from uniform noise, Adam on the images, min-max back into [0, 1] each step."
    g, out = torch.Generator().manual_seed(seed), []
    with channels_last(teacher):
        for chunk in targets.split(batch_size):
            x = torch.rand(len(chunk), 1, 32, 32, generator=g).requires_grad_()
            opt = torch.optim.Adam([x], lr=lr)
            for _ in range(steps):
                loss = -(chunk * F.log_softmax(teacher(to_inputs(x, *MNIST)) / 20.0, 1)).sum(1).mean()
                opt.zero_grad(); loss.backward(); opt.step()
                with torch.no_grad():
                    x.copy_(_minmax(x))
            out.append(x.detach())
    return torch.cat(out)


def test_impressions_are_the_adam_loop_on_inputs():
    torch.manual_seed(0)
    teacher = build_model("lenet5").eval()
    targets, _, _ = sample_targets(teacher.classifier.weight, 1)
    mine = synthesize_impressions(teacher, targets, (1, 32, 32), *MNIST, steps=4, lr=0.05, batch_size=8, seed=3)
    assert torch.equal(mine, bare_impressions(teacher, targets, 4, 0.05, 8, 3))


def test_combined_specialists_unchanged_without_specialists():
    p = torch.softmax(torch.randn(4, 5), 1)
    u = p.log().clone().requires_grad_()
    opt = torch.optim.Adam([u], lr=0.1)
    for _ in range(10):
        log_q = F.log_softmax(u, 1)
        loss = (p * (p.log() - log_q)).sum(1).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    torch.testing.assert_close(combine_specialists(p, [], [], steps=10), F.softmax(u.detach(), 1))


def test_distill_synthesizes_a_source_once_and_method_row_times_it():
    from kd_repro.train import SynthesizedSet, distill, method_row

    class Counted(SynthesizedSet):
        made = 0

        def make_inputs(self, teacher):
            Counted.made += 1
            return torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    teacher = build_model("hinton_student").eval()
    source = Counted(batch_size=8)
    loss = lambda s, t, y: kd_loss(s, t, 4.0)
    distill(build_model("hinton_student"), teacher, source, loss, 1)
    distill(build_model("hinton_student"), teacher, source, loss, 1)
    assert Counted.made == 1 and source.synthesized and len(source) == 2
    test = [(torch.randn(8, 1, 28, 28), torch.arange(8))]
    row = method_row("hinton_student", teacher, Counted(batch_size=8), test, 1, loss_fn=loss)
    assert Counted.made == 2 and row["samples"] == 16
    assert row["seconds"] == row["synthesis_seconds"] + row["distill_seconds"] and row["synthesis_seconds"] > 0
