"""ResNet backbone: torchvision layout, output strides, width multiplier, architecture inference."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torchvision

from model.backbone import ResNet, infer_backbone

torch.set_num_threads(1)
ARCHS = ("resnet18", "resnet34", "resnet50")


@cache
def _state(arch: str, width: float) -> dict[str, torch.Tensor]:
    return ResNet(arch, width).state_dict()


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_equals_torchvision_without_fc(arch):
    ours = _state(arch, 1.0)
    reference = getattr(torchvision.models, arch)(weights=None).state_dict()
    reference = {k: v for k, v in reference.items() if not k.startswith("fc.")}
    assert list(ours) == list(reference)
    for key, value in reference.items():
        assert ours[key].shape == value.shape, key
        assert ours[key].dtype == value.dtype, key


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stride", [32, 16, 8])
def test_output_stride_sets_the_map_size(arch, stride):
    net = ResNet(arch, width=0.125, output_stride=stride).eval()
    H, W = 64, 96
    with torch.no_grad():
        out = net(torch.randn(1, 3, H, W))
    assert out.shape == (1, net.num_channels, H // stride, W // stride)
    assert net.output_stride == stride


def test_same_parameters_whatever_the_stride():
    """Dilation changes no parameter shape, so a stride-32 checkpoint loads at stride 8."""
    a = ResNet("resnet18", width=0.25, output_stride=32).state_dict()
    b = ResNet("resnet18", width=0.25, output_stride=8)
    b.load_state_dict(a, strict=True)


@pytest.mark.parametrize("arch, expansion", [("resnet18", 1), ("resnet50", 4)])
def test_width_shrinks_channels(arch, expansion):
    full, quarter = ResNet(arch, 1.0), ResNet(arch, 0.25)
    assert full.num_channels == 512 * expansion
    assert quarter.num_channels == 128 * expansion
    assert quarter.conv1.weight.shape == (16, 3, 7, 7)
    assert quarter.layer3[0].conv1.weight.shape[0] == 64
    n_full = sum(p.numel() for p in full.parameters())
    n_quarter = sum(p.numel() for p in quarter.parameters())
    assert n_quarter < n_full / 10


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("width", [1.0, 0.25, 0.125])
@pytest.mark.parametrize("prefix", ["", "module.encoder_k.", "encoder_q."])
def test_infer_backbone(arch, width, prefix):
    state = {prefix + k: v for k, v in _state(arch, width).items()}
    # another backbone (different depth and width) under another prefix must not interfere
    other = "decoy." if arch != "resnet34" else "decoy_module."
    decoy = _state("resnet34" if arch != "resnet34" else "resnet50", 0.5)
    state.update({other + k: v for k, v in decoy.items()})
    state["module.projector_k.mlp.0.weight"] = torch.zeros(4, 4, 1, 1)
    assert infer_backbone(state, prefix) == (arch, width)


def test_infer_backbone_from_torchvision_weights():
    state = torchvision.models.resnet34(weights=None).state_dict()
    assert infer_backbone(state, "") == ("resnet34", 1.0)


def test_infer_backbone_wrong_prefix_raises():
    state = {"module.encoder_k." + k: v for k, v in ResNet("resnet18", 0.125).state_dict().items()}
    with pytest.raises(KeyError, match="no backbone weights"):
        infer_backbone(state, "encoder_k.")


def test_infer_backbone_rejects_unknown_depth():
    state = ResNet("resnet18", 0.125).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}
    with pytest.raises(KeyError, match="unsupported ResNet depth"):
        infer_backbone(state, "")


@pytest.mark.parametrize("arch", ARCHS)
def test_fresh_blocks_are_their_shortcut_path(arch):
    """The last BatchNorm scale of every residual block starts at zero (the authors' init), so a
    fresh block computes relu(shortcut(x))."""
    torch.manual_seed(0)
    net = ResNet(arch, width=0.25).eval()
    x = torch.randn(2, net.layer1[0].conv1.in_channels, 12, 12)
    for layer in (net.layer1, net.layer2):
        for block in layer:
            last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
            assert torch.count_nonzero(last_bn.weight) == 0
            shortcut = x if block.downsample is None else block.downsample(x)
            with torch.no_grad():
                torch.testing.assert_close(block(x), torch.relu(shortcut))
                x = block(x)
