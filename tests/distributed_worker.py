"""Run by tests/test_distributed.py, alone or under `torchrun --nproc_per_node 2`: a tiny fit, distill, evaluate,
Data Impressions, Lopes reconstructions, a DAFL run and cached teacher; rank 0 saves what came out to the file named on the command line.

The multi-step runs (fit, distill, Data Impressions, DAFL) are in float64. One process and two sum in different
orders, so their results agree only to rounding; Adam divides each gradient by its own size, and a gradient that is
0 in exact arithmetic (a convolution's bias before batch norm) is rounding noise whose sign moves the weight by the
whole learning rate. In float32 that noise (~1e-8 of a gradient) is of the size of Adam's eps (1e-8) and DAFL's
generator at rate 0.2 ends far apart on another CPU; in float64 (~1e-17) eps swamps it and the runs stay within
~1e-12 of each other, so the test can compare them tightly. Even one step of DAFL's generator is ill-conditioned in
float32 (a batch norm over a nearly constant channel divides by the square root of a variance that is mostly
cancellation: ~1 % apart on another CPU), so its first batch and gradients are float64 too. What does not sum across
ranks (each Lopes row is optimised alone; the cached teacher is trained by rank 0) stays in float32."""
import os
import signal
import sys

import torch
import torch.distributed as dist

from kd_repro.dafl import DAFLSynthesizer, Generator, load_generator, save_generator, train_dafl
from kd_repro.hinton import distillation_loss
from kd_repro.lopes import metadata_records, method_inputs, reconstruction_objectives
from kd_repro.models import MLP, build_model
from kd_repro.train import TransferSet, distill, evaluate, fit, train_teacher, world
from kd_repro.zskd import synthesize_impressions


def main(out):
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    images, labels = torch.randn(64, 1, 32, 32), torch.arange(64) % 10
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    teacher = build_model("lenet5")
    fit_history = fit(teacher, loader, 2, lr=1e-3, desc="fit")
    student = build_model("lenet5_half")
    rows = []
    student.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    distill_history = distill(student, teacher, TransferSet(torch.randn(48, 1, 32, 32), 16, seed=1),
                              distillation_loss(4.0), 2, desc="distill")
    result = evaluate(student, [(images[:30], labels[:30]), (images[30:], labels[30:])])
    impressions = synthesize_impressions(teacher, torch.softmax(torch.randn(10, 10), 1), (1, 32, 32), (0.5,), (0.5,),
                                         steps=3, lr=0.05, batch_size=4, seed=2)
    torch.manual_seed(5)  # an untrained teacher, the same to the bit in every run
    dafl_teacher, dafl_student, generator = build_model("lenet5"), build_model("lenet5_half"), Generator(widths=(8, 4))
    generated = []
    generator.register_forward_pre_hook(lambda module, args: generated.append(len(args[0])))
    dafl_history = train_dafl(dafl_teacher, dafl_student, generator, 3, batch_size=16, average=0.5)
    saved = load_generator(save_generator(generator, f"{out}.generator", dafl_teacher), dafl_teacher)  # read by every rank
    first_step = DAFLSynthesizer(Generator(widths=(8, 4)), 16, 1, lr=0.0).synthesize(dafl_teacher)
    first_batch = next(iter(first_step))
    first_step_gradients = {name: p.grad for name, p in first_step.generator.named_parameters()}
    try:
        DAFLSynthesizer(Generator(widths=(8, 4)), 15, 1)
        uneven = None
    except ValueError as e:
        uneven = str(e)
    torch.set_default_dtype(torch.float32)  # real images (float32) from here on; nothing below sums across ranks
    cached, info = train_teacher("hinton_student", "mnist", epochs=1, profile="smoke", train_limit=64, test_limit=64)
    reconstructions, reconstructed_rows = lopes_reconstructions()
    if world()[0] == 0:
        torch.save({"teacher": teacher.state_dict(), "student": student.state_dict(), "fit": fit_history,
                    "distill": distill_history, "evaluate": result, "impressions": impressions,
                    "cached_teacher": cached.state_dict(), "cached": info["cached"], "world": world()[1],
                    "student_rows": sum(rows), "reconstructions": reconstructions,
                    "reconstructed_rows": reconstructed_rows, "dafl_student": dafl_student.state_dict(),
                    "generator": generator.state_dict(), "dafl_history": dafl_history,
                    "generated_rows": sum(generated), "first_step_gradients": first_step_gradients,
                    "first_batch": first_batch._asdict(), "uneven": uneven,
                    "saved_generator": saved.state_dict()}, out)
    if dist.is_initialized():
        dist.destroy_process_group()


def lopes_reconstructions():
    "Every Lopes method's inputs for a tiny MLP with dropout (30 images, 3 steps), and the rows this rank optimised."
    torch.manual_seed(6)
    tiny = MLP((12,), num_classes=10, dropout=0.5, input_shape=(1, 4, 4)).eval()
    records = metadata_records(tiny, [(torch.randn(60, 1, 4, 4), torch.arange(60) % 10)], 10, keep=0.5)
    classes = torch.arange(10).repeat_interleave(3)
    objectives = reconstruction_objectives(tiny, records, classes, torch.Generator().manual_seed(0))
    rows = []
    tiny.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    made = {name: method_inputs(tiny, name, fn, classes, (1, 4, 4), [0.0], [1.0], steps=3,
                                generator=torch.Generator().manual_seed(4)) for name, (fn, _) in objectives.items() if fn}
    return made, sum(rows)


def killed_and_resumed(out, mode):
    "Three epochs of distillation with a checkpoint beside `out`; `kill` dies (SIGKILL) at the end of the second."
    torch.manual_seed(0)
    teacher, student = build_model("lenet5"), build_model("lenet5_half")
    source = TransferSet(torch.randn(64, 1, 32, 32), 16, seed=1)
    die = lambda record: record["epoch"] == 2 and os.kill(os.getpid(), signal.SIGKILL)
    history = distill(student, teacher, source, distillation_loss(4.0), 3, schedule="onecycle",
                      checkpoint=None if mode == "whole" else f"{out}.checkpoint", on_epoch=die if mode == "kill" else None)
    torch.save({"student": student.state_dict(), "history": history}, out)


if __name__ == "__main__":
    main(sys.argv[1]) if len(sys.argv) == 2 else killed_and_resumed(*sys.argv[1:])
