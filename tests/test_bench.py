"""The benchmark scripts still run (tiny shapes, a few steps); their speed is never asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    if str(BENCH) not in sys.path:  # as when run as a script: helpers beside it import
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_train_speed_times_the_trainer_step(tmp_path, capsys):
    bench = load("train_speed")
    out = tmp_path / "speed.json"
    args = bench.build_parser().parse_args(
        ["--preset", "tiny", "--batch-size", "4", "--device", "cpu", "--steps", "2",
         "--warmup", "1", "--json", str(out)]
    )  # fmt: skip
    assert bench.main(args) == 0
    [result] = json.loads(out.read_text())
    assert result["preset"] == "tiny" and result["batch"] == 4 and result["precision"] == "fp32"
    assert math.isfinite(result["images_per_s"]) and result["images_per_s"] > 0
    assert "| tiny |" in capsys.readouterr().out


def test_train_speed_with_the_real_pipeline(tmp_path, capsys):
    from PIL import Image

    for i in range(6):
        Image.new("RGB", (40, 32), (40 * i, 80, 120)).save(tmp_path / f"{i}.png")
    bench = load("train_speed")
    out = tmp_path / "speed.json"
    args = bench.build_parser().parse_args(
        ["--preset", "tiny", "--batch-size", "4", "--device", "cpu", "--steps", "3",
         "--warmup", "1", "--data", str(tmp_path), "--json", str(out)]
    )  # fmt: skip
    assert bench.main(args) == 0
    step_only, fed = json.loads(out.read_text())
    assert fed["fed_by"] == "pil pipeline" and "step only" in step_only["fed_by"]
    assert fed["images_per_s"] > 0
    assert "with data / step only" in capsys.readouterr().out


def test_train_speed_refuses_cuda_without_a_gpu(capsys, monkeypatch):
    bench = load("train_speed")
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    args = bench.build_parser().parse_args(["--preset", "tiny", "--device", "cuda"])
    assert bench.main(args) == 1
    assert "no CUDA GPU" in capsys.readouterr().err
