"""Faster ways to run the encoder's network (backbone + projector) on the CPU, chosen by name.

    eager          PyTorch as written (the default: the maps the paper's code would give)
    channels-last  PyTorch with NHWC tensors (oneDNN's preferred layout)
    compile        torch.compile (Inductor; needs a C++ compiler; compiles on first use)
    openvino       OpenVINO's CPU runtime (pip install openvino), fp32, or bf16 with --precision

The three others compute the same convolutions in another order: their features differ from
eager's by about 1e-7 and a few pixels in a million change prototype at near-ties (measured on
the real photos of the tests: bench/network_agreement.py, docs/BENCHMARKS.md), so they are
options, not the default. The grouping (dots, slots, valid mask) always runs in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: the command line's flags read RUNTIMES
    import torch
    from torch import nn

RUNTIMES = ("eager", "channels-last", "compile", "openvino")

Network = Callable[["torch.Tensor"], "torch.Tensor"]  # images (B, 3, H, W) -> (B, D, h, w)


def check_runtime(runtime: str) -> None:
    """ValueError unless `runtime` is one of RUNTIMES."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")


def network_runtime(network: nn.Module, runtime: str, device: torch.device, bf16: bool) -> Network:
    """`network` (eval, inference only) run by `runtime`, as a plain function (not a module, so
    that an encoder holding it does not register its weights twice); ValueError for an unknown
    name or a runtime that does not fit the device, RuntimeError when a package is missing."""
    import torch

    check_runtime(runtime)
    if runtime == "eager":
        return network.__call__
    if runtime == "channels-last":
        network.to(memory_format=torch.channels_last)
        return lambda x: network(x.contiguous(memory_format=torch.channels_last))
    if runtime == "compile":
        return torch.compile(network, dynamic=True).__call__  # one graph for every image shape
    if device.type != "cpu":
        raise ValueError(f"the openvino runtime runs on the CPU, not {device}")
    return _openvino(network, bf16)


def _openvino(network: nn.Module, bf16: bool) -> Network:
    import torch

    try:
        import openvino as ov
    except ImportError as error:
        raise RuntimeError(
            "the openvino runtime needs the openvino package: pip install openvino"
        ) from error
    example = torch.zeros(1, 3, 64, 64)
    model = ov.convert_model(network, example_input=example, input=[(-1, 3, -1, -1)])
    compiled = ov.Core().compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
    )

    def run(x: torch.Tensor) -> torch.Tensor:  # autocast does not reach it: bf16 is its own
        return torch.from_numpy(compiled(x.contiguous().numpy())[0])

    return run
