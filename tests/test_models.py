import pytest
import torch

from kd_repro.models import MODELS, build_model, count_parameters


def test_paper_parameter_counts():
    assert count_parameters(build_model("lenet5")) == 61_706  # ZSKD
    assert count_parameters(build_model("lenet5_half_zskd")) == 35_820  # ZSKD
    assert 15_000 < count_parameters(build_model("lenet5_half")) < 17_000  # DAFL: ~16K
    assert count_parameters(build_model("hinton_teacher")) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10


@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("resnet34",)])
def test_features_end_with_classifier_input(name):
    model = build_model(name).eval()
    shape = (2, 1, 28, 28) if name.startswith("hinton") else (2, 1, 32, 32) if name.startswith("lenet") else (2, 3, 32, 32)
    logits, feats = model(torch.randn(shape), return_features=True)
    assert logits.shape == (2, 10) and len(feats) == len(model.feature_names)
    assert feats[-1].ndim == 2 and torch.allclose(model.classifier(feats[-1]), logits, atol=1e-5)


def test_wrong_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"expects inputs of shape \(B, 1, 32, 32\), got \(2, 1, 28, 28\)"):
        build_model("lenet5")(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        build_model("resnet18")(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg16")


def test_lopes_initialisation_is_the_authors_and_opt_in():
    torch.manual_seed(0)
    lopes, default = build_model("hinton_teacher", init="lopes"), build_model("hinton_teacher")
    w = lopes.stages["fc2"][1].weight
    assert abs(w.std().item() - 0.88) < 0.01 and w.abs().max() <= 2  # N(0, 1) truncated at ±2
    assert all(torch.all(m.bias == 0.1) for m in lopes.modules() if isinstance(m, torch.nn.Linear))
    assert default.stages["fc2"][1].weight.abs().max() <= 1 / 1200 ** 0.5  # PyTorch's uniform ±1/√fan_in
    with pytest.raises(ValueError, match="unknown init 'he'"):
        build_model("hinton_teacher", init="he")
