"Lopes et al.'s public API: the graph Fourier basis, compress/reconstruct, metadata files."
import pytest
import torch

from kd_repro.lopes import (chain_adjacency, compress, fixed_dropout, graph_fourier_basis, layer_activations,
                            layer_operators, linear_part, load_metadata, metadata_bytes, reconstruct,
                            record_spectral, record_statistics, save_metadata, spectral_bases, spectral_objective)
from kd_repro.models import LeNet5, build_model


def _symmetric(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g)
    return a + a.T


def test_basis_is_orthonormal_eigenvectors():
    A = _symmetric(12)
    U = graph_fourier_basis(A)
    assert torch.allclose(U.T @ U, torch.eye(12), atol=1e-5)
    lam = torch.linalg.eigvalsh(A)
    assert torch.allclose(U.T @ A @ U, torch.diag(lam), atol=1e-4)


def test_compress_reconstruct_roundtrip_and_sparsity():
    U = graph_fourier_basis(_symmetric(20))
    s = torch.randn(4, 20)
    assert torch.allclose(reconstruct(compress(s, U, 1.0), U), s, atol=1e-4)
    c = compress(s, U, 0.1)
    assert ((c != 0).sum(-1) == 2).all()
    kept = (s @ U).abs().topk(2, -1).values
    assert torch.allclose(c.abs().topk(2, -1).values, kept)


@pytest.mark.parametrize("call,message", [
    (lambda U: graph_fourier_basis(torch.zeros(3, 4)), "square"),
    (lambda U: graph_fourier_basis(torch.tensor([[0.0, 1.0], [3.0, 0.0]])), "symmetric"),
    (lambda U: graph_fourier_basis(torch.tensor([[float("nan"), 0.0], [0.0, 0.0]])), "non-finite"),
    (lambda U: compress(torch.randn(7), U), "7 vertices"),
    (lambda U: compress(torch.randn(5), U, keep=0.0), "keep"),
    (lambda U: compress(torch.tensor([float("inf")] * 5), U), "non-finite"),
    (lambda U: reconstruct(torch.randn(2, 6), U), "6 vertices"),
])
def test_bad_input(call, message):
    U = graph_fourier_basis(_symmetric(5))
    with pytest.raises(ValueError, match=message):
        call(U)


def test_graph_edges_are_the_linear_maps_between_layers():
    model = build_model("lenet5")
    ops = layer_operators(model)
    A = chain_adjacency(ops)
    assert A.shape == (1176 + 400 + 120 + 84 + 10,) * 2 and torch.equal(A, A.T)
    assert torch.equal(A[1176:1576, :1176], ops[0])
    x = torch.randn(2, 6, 14, 14)  # the conv operator applied as a matrix equals the convolution
    assert torch.allclose(x.flatten(1) @ ops[0].T, linear_part(model.stages["conv2"], x).flatten(1), atol=1e-4)
    mlp = build_model("hinton_student")
    assert torch.equal(layer_operators(mlp)[0], mlp.stages["fc2"][1].weight.detach())


def test_unsupported_layers_are_refused():
    with pytest.raises(ValueError, match="no graph for a BatchNorm2d"):
        layer_operators(build_model("alexnet_cifar"))


def _digits_loader():
    from kd_repro.data import get_dataset, get_loader
    ds, _ = get_dataset("digits", size=32)
    return get_loader(ds, 256, train=False)


def test_metadata_file_roundtrip_and_refusal(tmp_path):
    model = build_model("lenet5")
    record = record_spectral(model, _digits_loader(), 10, pairs=True)
    assert metadata_bytes(record) > 0
    path = save_metadata(record, tmp_path / "meta.pt")
    back = load_metadata(path, build_model("lenet5"))
    assert torch.equal(back["coeffs"][1].to_dense(), record["coeffs"][1].to_dense())
    assert torch.equal(back["spread"][1].to_dense(), record["spread"][1].to_dense())
    with pytest.raises(ValueError, match="another architecture"):
        load_metadata(path, build_model("lenet5_half"))
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01junk")
    with pytest.raises(ValueError, match="not a readable"):
        load_metadata(tmp_path / "junk.pt", model)


def test_fixed_dropout_holds_masks():
    model = build_model("hinton_teacher").eval()
    x = torch.randn(4, 1, 28, 28)
    with fixed_dropout(model, torch.Generator().manual_seed(0)):
        a, b = model(x), model(x)
    assert torch.equal(a, b) and not torch.allclose(a, model(x))
    with pytest.raises(ValueError, match="dropout"):
        with fixed_dropout(build_model("lenet5")):
            pass


def test_spectral_spread_gives_each_image_its_own_target():
    model = build_model("lenet5").eval()
    record = record_spectral(model, _digits_loader(), 10, pairs=True)
    classes = torch.tensor([3, 3])
    x = torch.randn(1, 1, 32, 32).repeat(2, 1, 1, 1)  # two identical images of the same class
    acts = layer_activations(model, x, record["T"])
    sampled = spectral_objective(record, model, classes, torch.Generator().manual_seed(0))(acts)
    mean_only = {k: v for k, v in record.items() if k != "spread"}
    fixed = spectral_objective(mean_only, model, classes)(acts)
    assert not torch.allclose(sampled[0], sampled[1])
    assert torch.allclose(fixed[0], fixed[1])


def test_pre_activation_records_are_taken_before_relu_and_pooling(tmp_path):
    "The authors' recording point: a record taken there loads only for that point's widths and rebuilds its signals."
    model = LeNet5(channels=(1, 2), widths=(8, 6)).eval()
    x = torch.randn(4, 1, 32, 32)
    pre, post = (layer_activations(model, x, 1.0, at) for at in ("pre_activation", "output"))
    assert [a.shape[1] for a in pre] == [784, 200, 8, 6, 10] and [a.shape[1] for a in post] == [196, 50, 8, 6, 10]
    assert torch.allclose(torch.relu(pre[2]), post[2]) and (pre[2] < 0).any()
    stats = record_statistics(model, _digits_loader(), 10, at="pre_activation")
    assert stats["at"] == "pre_activation" and (stats["mean"][0] < 0).any()
    bases = spectral_bases(model, at="pre_activation")
    record = record_spectral(model, _digits_loader(), 10, keep=1.0, at="pre_activation", bases=bases)
    signal = torch.cat(stats["mean"], 1)  # keeping every coefficient rebuilds the class means exactly
    assert torch.allclose(reconstruct(record["coeffs"][0].to_dense(), bases[0]), signal, atol=1e-3)
    back = load_metadata(save_metadata(record, tmp_path / "pre.pt"), LeNet5(channels=(1, 2), widths=(8, 6)))
    assert back["widths"] == stats["widths"]
    with pytest.raises(ValueError, match="unknown recording point"):
        layer_activations(model, x, 1.0, "after_pool")
