"""The benchmark scripts still run (tiny shapes, a few steps); their speed is never asserted."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

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
    args = (
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
    args = (
        ["--preset", "tiny", "--batch-size", "4", "--device", "cpu", "--steps", "3",
         "--warmup", "1", "--data", str(tmp_path), "--json", str(out)]
    )  # fmt: skip
    assert bench.main(args) == 0
    step_only, fed = json.loads(out.read_text())
    assert fed["fed_by"] == "pil pipeline (real run)" and "step only" in step_only["fed_by"]
    for result in (step_only, fed):
        stages = result["stage_s"]
        assert set(stages) == {"data", "forward", "backward", "optimizer", "ema"}
        assert all(s >= 0 for s in stages.values()) and stages["forward"] > 0
        # the stages are parts of the step: together no longer than it
        assert sum(stages.values()) <= result["step_s"]
    assert "real run / step only" in capsys.readouterr().out


def test_stage_timer_charges_each_stage_what_ran_since_the_last(monkeypatch):
    bench = load("train_speed")
    clock = iter([0.0, 1.0, 3.0, 3.5, 10.0, 10.25])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    timer = bench.StageTimer(bench.torch.device("cpu"))
    timer.start()  # 0.0
    timer("data")  # 1.0, not counted yet
    timer.counting = True
    timer("forward")  # 3.0
    timer("backward")  # 3.5
    timer.start()  # 10.0
    timer("ema")  # 10.25
    assert timer.totals == {"data": 0.0, "forward": 2.0, "backward": 0.5, "optimizer": 0.0,
                            "ema": 0.25}  # fmt: skip


def test_train_speed_refuses_cuda_without_a_gpu(capsys, monkeypatch):
    bench = load("train_speed")
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    args = ["--preset", "tiny", "--device", "cuda"]
    assert bench.main(args) == 1
    assert "no CUDA GPU" in capsys.readouterr().err


def test_linear_probe_reads_separable_features_and_cell_centres():
    import numpy as np
    import torch

    probe = load("linear_probe")
    # cell centres of a 16 x 24 label map seen as a 2 x 3 map of stride 8 (no resize)
    label_map = np.zeros((16, 24), dtype=np.uint8)
    label_map[:8, 8:16] = 1
    label_map[8:, 16:] = 2
    cells = probe.cell_labels(label_map, (2, 3), (24, 16), stride=8)
    assert cells.tolist() == [0, 1, 0, 0, 0, 2]
    # features that carry the class (plus noise) are read back; pure noise is not
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    signal = torch.nn.functional.one_hot(y, 4).float() * 3 + torch.randn(400, 4, generator=g)
    things = torch.tensor([1, 2])
    good = probe._fit_and_score(signal[:300], y[:300], signal[300:], y[300:], 4, things, 200, 0)
    noise = torch.randn(400, 4, generator=g)
    bad = probe._fit_and_score(noise[:300], y[:300], noise[300:], y[300:], 4, things, 200, 0)
    assert good["object_pixels"] > 90 and good["all_pixels"] > 90
    assert bad["object_pixels"] < 60


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_supervised_bound_scores_every_class(tmp_path, capsys):
    from model.scenes import write_scenes

    write_scenes(tmp_path / "train", images=6, size=64, seed=0, split="train", workers=1)
    write_scenes(tmp_path / "test", images=4, size=64, seed=1, split="val", workers=1)
    bench = load("supervised_bound")
    out = tmp_path / "bound.json"
    argv = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test")]
    assert bench.main([*argv, "--steps", "2", "--batch-size", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["per_class_iou"]) == 17 and result["steps"] == 2
    assert all(0 <= v <= 100 for v in result["per_class_iou"].values())
    assert result["objects_at_30"] == sum(
        v >= 30 for v in list(result["per_class_iou"].values())[:12]
    )


def test_supervised_bound_trains_the_whole_network():
    import torch

    bench = load("supervised_bound")
    model = bench.Segmenter(17)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 17, (4, 32, 32))
    args = argparse.Namespace(lr=1e-3, seed=0, steps=2, batch_size=2)
    bench.train_segmenter(model, x, y, args)
    changed = [not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters())]
    assert sum(changed) > len(changed) // 2  # the backbone learns, not only the classifier


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
@pytest.mark.parametrize("style", ["natural", "hard"])
def test_demo_quality_scores_a_style_and_reports_the_palette_pairs(tmp_path, capsys, style):
    from conftest import save_random_encoder

    bench = load("demo_quality")
    checkpoint = save_random_encoder(tmp_path / "encoder.pt", seed=0)
    out = tmp_path / "quality.json"
    argv = ["--checkpoint", str(checkpoint), "--images", "3", "--size", "64", "--style", style]
    argv += ["--scenes", str(tmp_path / "scenes"), "--no-probe", "--no-random-init"]
    argv += ["--json", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"3 {style} images" in printed and "palette pairs split" in printed
    data = json.loads((tmp_path / "scenes/annotations/instances_val.json").read_text())
    assert data["info"]["scenes"]["style"] == style
    result = json.loads(out.read_text())["trained"]
    pairs = result["palette_pairs_split"]
    assert len(pairs) == 6 and pairs[0][1:3] == ["dotted disc", "striped square"]
    per_class = result["majority"]["per_class_iou"]
    assert [p[3] for p in pairs] == [min(per_class[p[1]], per_class[p[2]]) >= 30 for p in pairs]


def test_split_pairs_needs_both_classes_found():
    bench = load("demo_quality")
    per_class = {name: 0.0 for pair in bench.palette_pairs() for name in pair[1:]}
    per_class.update({"dotted disc": 45.0, "striped square": 31.0, "checkered triangle": 80.0})
    split = [row[3] for row in bench.split_pairs(per_class)]
    assert split == [True, False, False, False, False, False]


def test_structure_finds_long_functions_cycles_and_upward_arrows(tmp_path, capsys):
    bench = load("structure")
    for package in ("model", "explorer", "indexing/store", "indexing/build", "indexing/coco"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app.py").write_text("import explorer.a\n")
    (tmp_path / "explorer" / "a.py").write_text("def f():\n    from explorer import b\n")
    (tmp_path / "explorer" / "b.py").write_text("from explorer.a import f\n")
    (tmp_path / "model" / "m.py").write_text("def long():\n" + "    x = 1\n" * 61)
    run = tmp_path / "indexing" / "build" / "run.py"
    run.write_text("from indexing.store import s\nimport indexing.coco.c\n")
    (tmp_path / "indexing" / "store" / "s.py").write_text("import indexing.build.run\n")
    (tmp_path / "indexing" / "coco" / "c.py").write_text("")
    assert bench.main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "functions over 60 lines: 1" in out and "62 model/m.py:1 long" in out
    assert "import cycles: 2" in out and "explorer.a <-> explorer.b" in out
    assert "store -> build" in out and "build -> store" in out and "build -> coco" in out
    (tmp_path / "model" / "m.py").write_text("def short():\n    return 1\n")
    (tmp_path / "explorer" / "b.py").write_text("")
    (tmp_path / "indexing" / "store" / "s.py").write_text("")
    run.write_text("from indexing.store import s\n")
    (tmp_path / "indexing" / "coco" / "c.py").write_text("from indexing.build import run\n")
    assert bench.main(["--root", str(tmp_path)]) == 0
    assert "coco -> build" in capsys.readouterr().out  # the command drives the build
