"Every numbered notebook runs end to end in the smoke profile (one test each)."
import numpy as np
import pytest

from conftest import NBS
from kd_repro.reproduce import list_notebooks, run_notebook

NOTEBOOKS = list_notebooks(NBS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook, smoke_out):
    run = run_notebook(notebook, "smoke", smoke_out)
    assert run.ok, f"{notebook.name} failed in cell {run.cell}: {run.error} (executed copy: {run.output})"


PAPER_NOTEBOOKS = [nb for nb in NOTEBOOKS if 10 <= int(nb.stem[:2]) < 90]


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    "The paper profile's full-size splits as tiny idx files cut from real images (the copies shipped with kd_repro)."
    from kd_repro.data import FOLDER_NAMES, IDX_FILES, get_dataset, write_idx
    root, nothing = tmp_path_factory.mktemp("paper_data"), tmp_path_factory.mktemp("no_data")
    for name, subset in (("mnist", "full"), ("fashion_mnist", "first_1000")):
        shipped, _ = get_dataset(name, "test", subset=subset, root=nothing)
        images, labels = (shipped.images[:, 0] * 255).round().byte().numpy(), shipped.labels.numpy()
        folder = root / FOLDER_NAMES[name][0]
        folder.mkdir()
        for split, part in (("train", slice(0, 600)), ("test", slice(600, 1000))):
            write_idx(folder / f"{IDX_FILES[split].format('images-idx3')}.gz", images[part])
            write_idx(folder / f"{IDX_FILES[split].format('labels-idx1')}.gz", labels[part])
    for name in ("cifar10", "cifar100"):
        write_cifar_from(get_dataset("fashion_mnist", "test", subset="first_1000", root=nothing)[0], root, name)
    return root


def write_cifar_from(shipped, root, name):
    "CIFAR-10's or CIFAR-100's python batches holding real Fashion-MNIST images, padded to 32×32, 3 channels."
    from kd_repro.data import CIFAR_FILES, CIFAR_FOLDERS, write_cifar_batch
    images = np.pad((shipped.images[:, 0] * 255).round().byte().numpy(), ((0, 0), (2, 2), (2, 2)))
    images, labels = np.repeat(images[..., None], 3, axis=-1), shipped.labels.numpy()
    folder = root / CIFAR_FOLDERS[name]
    folder.mkdir()
    train_files = CIFAR_FILES[name]["train"]
    per_file = 600 // len(train_files)
    parts = [slice(per_file * i, per_file * (i + 1)) for i in range(len(train_files))] + [slice(600, 1000)]
    for file, part in zip(train_files + CIFAR_FILES[name]["test"], parts):
        write_cifar_batch(folder / file, images[part], labels[part], fine=name == "cifar100")


@pytest.mark.parametrize("notebook", PAPER_NOTEBOOKS, ids=[nb.stem for nb in PAPER_NOTEBOOKS])
def test_paper_notebook_code_paths_run(notebook, paper_data, tmp_path, monkeypatch):
    "The paper profile's settings and data subsets (here tiny real-format files) on the smoke profile's budgets."
    monkeypatch.setenv("KD_REPRO_DATA", str(paper_data))
    run = run_notebook(notebook, "paper-smoke", tmp_path / "paper-smoke")
    assert run.ok, f"{notebook.name} failed in cell {run.cell}: {run.error} (executed copy: {run.output})"
