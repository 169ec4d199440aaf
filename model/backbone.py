"""ResNet-18/34/50 with torchvision's parameter names, a width multiplier and optional dilation.

With width 1.0 the state dict equals torchvision's resnet (without `fc`), so the published
SlotCon backbones load unchanged. Unlike torchvision, BasicBlock supports dilation, which lets
small ResNet-18 models keep fine maps (output stride 8 or 16).
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import ModelConfig

# blocks per stage and block type per architecture (torchvision's table)
_LAYOUT = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: nn.Module):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, downsample: nn.Module):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Images (B, 3, H, W) -> feature map (B, C, H / stride, W / stride); no pooling, no fc."""

    def __init__(self, arch: str, width: float = 1.0, output_stride: int = 32):
        super().__init__()
        kind, blocks = _LAYOUT[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
        # output_stride 16 dilates layer4, 8 dilates layer3 and layer4 (torchvision's convention)
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
        self.inplanes, self.dilation = planes[0], 1
        self.conv1 = nn.Conv2d(3, planes[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, planes[0], blocks[0])
        flags = dilate[output_stride]
        self.layer2 = self._make_layer(block, planes[1], blocks[1], 2, flags[0])
        self.layer3 = self._make_layer(block, planes[2], blocks[2], 2, flags[1])
        self.layer4 = self._make_layer(block, planes[3], blocks[3], 2, flags[2])
        self.num_channels = planes[3] * block.expansion
        self.output_stride = output_stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # As the authors' ResNet (and Goyal et al., 2017): the last BatchNorm scale of every
        # residual block starts at 0, so each block starts as its shortcut path.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, block, planes: int, n: int, stride: int = 1, dilate: bool = False):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, self.dilation, None) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C1, H/4, W/4)
        x = self.layer2(self.layer1(x))
        return self.layer4(self.layer3(x))  # (B, C, H/stride, W/stride)


def build_backbone(cfg: ModelConfig) -> ResNet:
    return ResNet(cfg.arch, cfg.width, cfg.output_stride)


def infer_backbone(state: dict[str, torch.Tensor], prefix: str) -> tuple[str, float]:
    """Architecture name and width multiplier from a backbone state dict (keys under `prefix`)."""
    if f"{prefix}conv1.weight" not in state:
        raise KeyError(f"no backbone weights under '{prefix}'")
    width = state[f"{prefix}conv1.weight"].shape[0] / 64
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    names = [k[len(prefix) :] for k in state if k.startswith(f"{prefix}layer3.")]
    layer3_blocks = len({name.split(".")[1] for name in names})
    if layer3_blocks not in (2, 6) or (bottleneck and layer3_blocks != 6):
        raise KeyError(f"unsupported ResNet depth ({layer3_blocks} blocks in layer3)")
    if bottleneck:
        return "resnet50", width
    return ("resnet34" if layer3_blocks == 6 else "resnet18"), width
