"""Zoo models load torchvision-format state dicts: ``create("resnet50", weights="resnet50.pth")``.

The key/shape lists of torchvision's architectures are committed fixtures (``fixtures/torchvision_*.json``,
made by ``fixtures/make_torchvision_fixtures.py`` from a re-creation of torchvision's model source in
``torchvision_reference.py``) whose parameter counts equal the ones torchvision publishes. Every zoo
counterpart must take exactly those tensors, and with the reference's weights compute the reference's outputs.
"""

import json
from pathlib import Path

import pytest
import torch

from deepzen.vision import models
from torchvision_reference import ARCHITECTURES, PUBLISHED_NUM_PARAMS

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures"
CREATE_KWARGS = {"inception_v3": {"aux_logits": True}}  # torchvision's file holds the auxiliary classifier


def _fixture(name):
    return json.loads((FIXTURES / f"torchvision_{name}.json").read_text())


def _randomize(module, seed=0):
    """Random values in every parameter and BatchNorm statistic (so a misplaced tensor changes the output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                scale = 1.0 if tensor.dim() == 1 else (tensor[0].numel()) ** -0.5  # fan-in scaled weights
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return module.eval()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_fixture_is_torchvision_architecture(name):
    fixture = _fixture(name)
    assert fixture["num_params"] == PUBLISHED_NUM_PARAMS[name]
    with torch.device("meta"):
        reference = ARCHITECTURES[name]()
    assert fixture["tensors"] == [[key, list(value.shape)] for key, value in reference.state_dict().items()]
    assert sum(p.numel() for p in reference.parameters()) == fixture["num_params"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_torchvision_tensor_has_its_place_in_the_zoo_model(name):
    with torch.device("meta"):
        model = models.create(name, **CREATE_KWARGS.get(name, {}))
        state = {key: torch.empty(shape) for key, shape in _fixture(name)["tensors"]}
    mapping, unmatched = model._torchvision_to_deepzen(state)  # deepzen key -> torchvision key
    assert unmatched == []
    own = model.state_dict()
    assert sorted(mapping) == sorted(own)
    assert all(tuple(state[mapping[key]].shape) == tuple(own[key].shape) for key in own)
    model.load_weights(state)  # the checks pass on the meta device too
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_NUM_PARAMS[name]


def test_each_tensor_lands_in_one_parameter_by_value_tags():
    fixture = _fixture("resnet50")["tensors"]
    state = {key: torch.full(shape, float(index + 1)) for index, (key, shape) in enumerate(fixture)}
    model = models.create("resnet50", weights=state)
    tags = {key: torch.unique(value).tolist() for key, value in model.state_dict().items()}
    assert all(len(values) == 1 for values in tags.values())
    assert sorted(values[0] for values in tags.values()) == [float(i + 1) for i in range(len(fixture))]
    assert tags["features.stem.conv.weight"] == [1.0]  # conv1.weight, torchvision's first tensor
    assert tags["classifier.bias"] == [float(len(fixture))]  # fc.bias, its last


@pytest.mark.parametrize("name, size", [("resnet18", 64), ("resnet50", 64), ("resnext50_32x4d", 64),
                                        ("alexnet", 64), ("vgg11_bn", 32), ("vgg16", 32), ("mobilenet_v2", 64),
                                        ("inception_v3", 75)])
def test_loaded_zoo_model_computes_what_the_torchvision_model_does(name, size):
    # Built on the meta device and then allocated: drawing VGG's initial weights twice would only cost time.
    with torch.device("meta"):
        reference, model = ARCHITECTURES[name](), models.create(name, **CREATE_KWARGS.get(name, {}))
    reference = _randomize(reference.to_empty(device="cpu"))
    model = model.to_empty(device="cpu").load_weights(reference.state_dict()).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, received = reference(x), model(x)
    assert expected.std() > 0.1  # not a degenerate output
    torch.testing.assert_close(received, expected, rtol=1e-4, atol=1e-4)


def test_create_loads_a_pth_file_and_older_files_without_num_batches_tracked(tmp_path):
    reference = _randomize(ARCHITECTURES["resnet18"]())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    old = {key: value for key, value in reference.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "resnet18-old.pth")
    for file in ("resnet18.pth", "resnet18-old.pth"):
        model = models.create("resnet18", weights=tmp_path / file).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_deepzen_state_dicts_load_too(tmp_path):
    from safetensors.torch import save_file

    source = _randomize(models.create("resnet18", num_classes=7))
    save_file(source.state_dict(), tmp_path / "mine.safetensors")
    x = torch.randn(1, 3, 32, 32)
    for weights in (source.state_dict(), tmp_path / "mine.safetensors"):
        model = models.create("resnet18", num_classes=7, weights=weights).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), source(x))


@pytest.fixture(scope="module")
def resnet18_state():
    return ARCHITECTURES["resnet18"]().state_dict()


def test_a_different_classifier_is_named_with_the_way_out(resnet18_state):
    with pytest.raises(ValueError, match=r"classifier\.weight \(file: fc\.weight\) is \(1000, 512\) in the file, "
                                         r"\(10, 512\) in the model.*reset_classifier"):
        models.create("resnet18", num_classes=10, weights=resnet18_state)
    with pytest.raises(ValueError, match=r"features\.stem\.conv\.weight \(file: conv1\.weight\) is \(64, 3, 7, 7\)"):
        models.create("resnet18", in_channels=1, weights=resnet18_state)


def test_missing_and_unexpected_keys_are_named(resnet18_state):
    state = dict(resnet18_state)
    del state["layer1.0.conv1.weight"]
    with pytest.raises(ValueError, match=r"resnet18: .*missing \(1\): features\.layer1\.0\.conv1\.weight"):
        models.create("resnet18", weights=state)
    state = {**resnet18_state, "layer5.0.conv1.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected \(1\): layer5\.0\.conv1\.weight"):
        models.create("resnet18", weights=state)
    state = {**resnet18_state, "head.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"\(torchvision's names, mapped\) do not fit.*unexpected \(1\): head\.weight"):
        models.create("resnet18", weights=state)
    # resnet50's file into resnet18: the bottleneck's conv3 has no place, shapes differ.
    with torch.device("meta"):
        bigger = {key: torch.empty(shape) for key, shape in _fixture("resnet50")["tensors"]}
    with pytest.raises(ValueError, match=r"unexpected \(\d+\): layer1\.0\.conv3\.weight.*shapes differ"):
        models.create("resnet18", weights=bigger)


def test_a_deepzen_state_dict_with_a_stray_key_is_read_as_deepzen_names():
    with torch.device("meta"):
        state = {**models.create("resnet18").state_dict(), "features.extra.weight": torch.empty(1)}
        with pytest.raises(ValueError, match=r"\(deepzen's names\) do not fit.*unexpected \(1\): "
                                             r"features\.extra\.weight"):
            models.create("resnet18", weights=state)


def test_bad_files_and_architectures_without_a_torchvision_map_are_refused(tmp_path, resnet18_state):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        models.create("resnet18", weights=tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="No weights file"):
        models.create("resnet18", weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match=r"googlenet: .*unexpected"):
        models.create("googlenet", weights=resnet18_state)
