"""Training: the model learns on a fixed batch, gradients and EMA, resume, divergence, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from model import train as train_module
from model.augment import AugmentConfig
from model.checkpoint import load_encoder, read_checkpoint
from model.config import PRESETS, TINY, override
from model.data import ImageCollection, TwoViewDataset
from model.losses import group_loss, invert_augmentation, region_loss
from model.slotcon import SlotCon, teacher_momentum
from model.train import TrainingDiverged, build_parser, config_from_args, main, train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
LOG_KEYS = {"loss", "group_loss", "slot_loss", "lr", "momentum", "images_per_s"}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """16 random 48 x 48 PNGs: smooth colour blobs, so that crops differ in content."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(16):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 48), Image.Resampling.BILINEAR).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def batch(images):
    """One fixed batch of 8 two-view samples (the six tensors SlotCon.forward takes)."""
    dataset = TwoViewDataset(ImageCollection(images), AugmentConfig(TINY.image_size, 0.2), seed=0)
    views, _ = next(iter(DataLoader(dataset, batch_size=8, shuffle=False)))
    return list(views)


def _cfg(images: Path, out: Path, **changes):
    return override(TINY, data=str(images), out=str(out), workers=0, device="cpu", **changes)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the module


def test_loss_is_finite_and_falls_on_a_repeated_batch(batch):
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(*batch)
        assert torch.isfinite(out.loss) and torch.isfinite(out.group) and torch.isfinite(out.slot)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        model.update_teacher(0.9)
        losses.append(out.loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_total_loss_weights_group_and_slot(batch):
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    out = model(*batch)
    w = TINY.model.group_loss_weight
    torch.testing.assert_close(out.loss, w * out.group + (1 - w) * out.slot)
    assert out.group > 0 and out.slot > 0


def test_student_gets_gradients_teacher_none(batch):
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    with torch.no_grad():  # the residual branches start closed (zero gamma): open them
        for name, p in model.named_parameters():
            if name.endswith(("bn2.weight", "bn3.weight")) and ".layer" in name:
                p.fill_(0.1)
    model(*batch).loss.backward()
    student = ["encoder_q.", "projector_q.", "grouping_q.", "predictor_slot."]
    teacher = ["encoder_k.", "projector_k.", "grouping_k."]
    names = [name for name, _ in model.named_parameters()]
    assert all(any(name.startswith(p) for p in student + teacher) for name in names)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in student):
            assert p.requires_grad, name
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad, name
            assert p.grad is None, name
    assert model.center.grad is None


def _balanced_model() -> SlotCon:
    """TINY's model with Sinkhorn targets, so that no center moves between forward passes."""
    torch.manual_seed(0)
    return SlotCon(override(TINY, teacher_balance="sinkhorn").model)


def test_a_local_view_equal_to_its_parent_scores_as_the_parent(batch):
    """A local view that is its parent view (whole box, same flip) is grouped against the
    teacher's map of that parent: the student's and the teacher's maps of view 1, flips undone."""
    model = _balanced_model()
    view1, view2, _, _, flip1, flip2 = batch
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(len(view1), 4)
    with torch.no_grad():
        teacher = (model._teacher_map(view1), model._teacher_map(view2))
        local, region = model._local_losses(
            teacher, (flip1, flip2), view1[:, None], whole[:, None], flip1[:, None]
        )
        student = invert_augmentation(model._student(view1).dots, whole, flip1)

        def against(k, flip):
            aligned = invert_augmentation(k[1].dots, whole, flip)
            return group_loss(student, aligned, model.center, 0.1, 0.07, "sinkhorn")

        expected, wrong_parent = against(teacher[0], flip1), against(teacher[1], flip2)
    torch.testing.assert_close(local, expected)
    assert not torch.isclose(local, wrong_parent)
    assert region is None  # local_contrast_weight 0


def test_local_views_join_the_group_loss_as_the_mean_over_pairs(batch):
    model = _balanced_model()
    view1, view2, _, _, flip1, flip2 = batch
    n = 3
    locals_ = torch.nn.functional.interpolate(view1, size=16)[:, None].repeat(1, n, 1, 1, 1)
    boxes = torch.tensor([0.1, 0.2, 0.6, 0.7]).expand(len(view1), n, 4)
    flips = torch.zeros(len(view1), n, dtype=torch.bool)
    with torch.no_grad():
        plain = model(*batch)
        more = model(*batch, locals_, boxes, flips)
        teacher = (model._teacher_map(view1), model._teacher_map(view2))
        local, _ = model._local_losses(teacher, (flip1, flip2), locals_, boxes, flips)
    torch.testing.assert_close(more.group, (plain.group + local) * 2 / (2 + n))
    torch.testing.assert_close(more.slot, plain.slot)
    assert more.loss.isfinite()


def test_region_loss_adds_its_weight_and_learns_from_the_local_views(batch):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY.model, teacher_balance="sinkhorn", local_contrast_weight=0.3)
    model = SlotCon(cfg)
    view1 = batch[0]
    locals_ = torch.nn.functional.interpolate(view1, size=16)[:, None].repeat(1, 2, 1, 1, 1)
    boxes = torch.tensor([0.0, 0.0, 0.5, 0.5]).expand(len(view1), 2, 4)
    flips = torch.zeros(len(view1), 2, dtype=torch.bool)
    locals_.requires_grad_(True)
    losses = model(*batch, locals_, boxes, flips)
    w = model.cfg.group_loss_weight
    expected = w * losses.group + (1 - w) * losses.slot + 0.3 * losses.region
    torch.testing.assert_close(losses.loss, expected)
    assert losses.region.isfinite() and losses.region > 0
    losses.region.backward()
    assert locals_.grad is not None and locals_.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder_k.parameters())


def test_region_loss_equals_the_hand_computed_cross_entropy():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = torch.tensor([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0]])
    loss = region_loss(queries, keys, lambda x: x, 0.5)
    q = torch.nn.functional.normalize(queries, dim=1)
    k = torch.nn.functional.normalize(keys, dim=1)
    logits = q @ k.T / 0.5
    expected = -torch.log_softmax(logits, dim=1).diagonal().mean() * 1.0
    torch.testing.assert_close(loss, expected)


def test_forward_updates_the_center(batch):
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    assert torch.equal(model.center, torch.zeros(1, TINY.model.num_prototypes))
    model(*batch)
    assert torch.isfinite(model.center).all() and model.center.abs().sum() > 0


def test_update_teacher_follows_the_ema_formula():
    """Parameters move by the EMA formula; BatchNorm statistics are the teacher's own."""
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    with torch.no_grad():  # make student and teacher differ, parameters and statistics
        for name, t in model.state_dict().items():
            if ("_q." in name or name.startswith("predictor")) and t.dtype.is_floating_point:
                t.add_(torch.rand_like(t))
    teacher_before = {n: t.clone() for n, t in model.state_dict().items() if "_k." in n}
    student = {n: t.clone() for n, t in model.state_dict().items()}
    parameter_names = {n for n, _ in model.named_parameters()}
    m = 0.7
    model.update_teacher(m)
    after = model.state_dict()
    checked = buffers = 0
    for name, t in teacher_before.items():
        s = student[name.replace("_k.", "_q.")]
        if name in parameter_names:
            expected = m * t + (1 - m) * s
            torch.testing.assert_close(after[name], expected, rtol=1e-6, atol=1e-7)
            if name.endswith("weight") and not torch.equal(t, s):
                assert not torch.allclose(after[name], t), name
            checked += 1
        else:  # running_mean / running_var / num_batches_tracked: untouched by the EMA
            assert torch.equal(after[name], t), name
            buffers += 1
    assert checked > 20 and buffers > 20
    # the student does not move
    for name, value in student.items():
        if "_q." in name or name.startswith("predictor_slot."):
            assert torch.equal(after[name], value)


def test_teacher_statistics_come_from_its_own_forward_passes(batch):
    torch.manual_seed(0)
    model = SlotCon(TINY.model)
    before = model.encoder_k.bn1.running_mean.clone()
    model(*batch)
    own = model.encoder_k.bn1.running_mean.clone()
    assert not torch.equal(own, before)  # the teacher's forward (train mode) updated them
    model.update_teacher(0.5)
    assert torch.equal(model.encoder_k.bn1.running_mean, own)


def test_teacher_momentum_schedule():
    T, m0 = 100, 0.99
    assert teacher_momentum(0, T, m0) == m0
    assert teacher_momentum(T, T, m0) == 1.0
    assert teacher_momentum(T // 2, T, m0) == pytest.approx(1 - (1 - m0) / 2)
    values = [teacher_momentum(t, T, m0) for t in range(T + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert teacher_momentum(25, T, m0) == pytest.approx(
        1 - (1 - m0) * (math.cos(math.pi / 4) + 1) / 2
    )


def _adamw(model: SlotCon) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)


def test_optimisation_step_reports_its_stages_in_order_and_computes_the_same(batch):
    """The stage hook (bench/train_speed.py's timer) only observes: same parameters after."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(SlotCon(TINY.model))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    stages = []
    for model, lap in zip(models, (None, stages.append)):
        train_module.optimisation_step(
            model, model, _adamw(model), scaler, batch, None, 0.9, lap=lap
        )
    assert stages == ["forward", "backward", "optimizer", "ema"]
    a, b = (dict(m.named_parameters()) for m in models)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_trainers_channels_last_model_computes_the_same_loss_and_gradients(batch):
    """The trainer keeps the model (and views) channels_last, on the CPU too, for speed: the
    same maths as the contiguous layout, to float rounding."""
    torch.manual_seed(0)
    plain = SlotCon(TINY.model)
    torch.manual_seed(0)
    fast = train_module._model(TINY, torch.device("cpu"), world=1)
    assert fast.encoder_q.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    views = train_module.views_to_device(batch, torch.device("cpu"))
    assert views[0].is_contiguous(memory_format=torch.channels_last)
    out_plain, out_fast = plain(*batch), fast(*views)
    torch.testing.assert_close(out_fast.loss, out_plain.loss, rtol=1e-5, atol=1e-6)
    out_plain.loss.backward()
    out_fast.loss.backward()
    grads = dict(fast.named_parameters())
    for name, p in plain.named_parameters():
        if p.grad is not None and p.grad.norm() > 1e-4:  # not the rounding noise of ~0 grads
            torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- the trainer


def test_resumed_run_equals_uninterrupted_run(images, tmp_path):
    interrupted = _cfg(images, tmp_path / "a")
    train(interrupted, stop_after_epochs=1)
    half = read_checkpoint(tmp_path / "a" / "last.pt")
    assert half["epoch"] == 1 and half["step"] == 2
    train(interrupted)  # resumes from last.pt
    train(_cfg(images, tmp_path / "b"))
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # the model moved during the second half
    assert not all(torch.equal(half["model"][k], a["model"][k]) for k in a["model"])
    # logs: 2 + 2 steps in the interrupted run, the same losses as the uninterrupted one
    log_a, log_b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b] == [1, 2, 3, 4]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert all(LOG_KEYS <= set(r) for r in log_a)
    assert (tmp_path / "a" / "encoder.pt").is_file()


def test_run_with_local_views_resumes_exactly(images, tmp_path):
    changes = {"pipeline": "tensor", "local_views": 2, "local_size": 16, "local_hue": 0.5}
    interrupted = _cfg(images, tmp_path / "a", **changes)
    train(interrupted, stop_after_epochs=1)
    train(interrupted)
    train(_cfg(images, tmp_path / "b", **changes))
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["loss"] for r in _log(tmp_path / "a")] == [r["loss"] for r in _log(tmp_path / "b")]
    assert a["config"]["local_views"] == 2


def test_local_views_need_the_tensor_pipeline(images, tmp_path):
    with pytest.raises(ValueError, match="tensor"):
        _cfg(images, tmp_path, pipeline="pil", local_views=2)
    with pytest.raises(ValueError, match="local views"):
        _cfg(images, tmp_path, pipeline="tensor", local_min_scale=0.5, local_max_scale=0.2)
    with pytest.raises(ValueError, match="needs local views"):
        _cfg(images, tmp_path, pipeline="tensor", local_contrast_weight=0.5)


def test_non_finite_loss_stops_and_keeps_the_checkpoint(images, tmp_path, monkeypatch):
    cfg = _cfg(images, tmp_path / "run")
    train(cfg, stop_after_epochs=1)
    last, encoder = tmp_path / "run" / "last.pt", tmp_path / "run" / "encoder.pt"
    before = _sha256(last), _sha256(encoder)
    real = train_module.learning_rate
    # from step 2 (the second epoch) the learning rate is NaN: the weights become NaN
    monkeypatch.setattr(
        train_module,
        "learning_rate",
        lambda step, *args: float("nan") if step >= 2 else real(step, *args),
    )
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train(cfg)
    assert (_sha256(last), _sha256(encoder)) == before
    assert read_checkpoint(last)["step"] == 2
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_command_line_run(images, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "model.train", "--preset", "tiny"]
    command += ["--data", str(images), "--out", str(out), "--epochs", "1"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = _log(out)
    assert len(records) == 2  # 16 images / batch 8, one epoch
    for record in records:
        assert LOG_KEYS <= set(record)
        assert all(math.isfinite(record[k]) for k in LOG_KEYS)
    assert (out / "last.pt").is_file() and (out / "encoder.pt").is_file()
    assert read_checkpoint(out / "last.pt")["config"]["epochs"] == 1


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--preset" in text and "--data" in text and "--num-prototypes" in text


def test_command_line_without_data_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "tiny"])
    assert exit_info.value.code == 2
    assert "--data is required" in capsys.readouterr().err


def test_command_line_rejects_a_bad_value(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "tiny", "--data", "x", "--optimizer", "adam"])
    assert exit_info.value.code == 2
    assert "optimizer must be" in capsys.readouterr().err


def test_resume_drops_log_records_after_the_checkpoint(tmp_path):
    from model.train import _truncate_log

    log = tmp_path / "log.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in range(1, 8)]
    log.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # torn by a kill
    _truncate_log(log, 5)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_batch_size_override_scales_the_learning_rate():
    parser = build_parser()
    paper = config_from_args(
        parser.parse_args(["--preset", "paper-coco-r50", "--batch-size", "64"])
    )
    assert paper.lr == pytest.approx(1.0 * 64 / 256)  # the paper's rule
    demo = config_from_args(parser.parse_args(["--batch-size", "32"]))
    assert demo.lr == pytest.approx(PRESETS["demo"].lr / 2)
    both = config_from_args(parser.parse_args(["--batch-size", "32", "--lr", "0.01"]))
    assert both.lr == 0.01  # an explicit --lr wins
    assert config_from_args(parser.parse_args([])).lr == PRESETS["demo"].lr


def test_snapshots_are_encoder_files_at_the_chosen_epochs(images, tmp_path):
    out = tmp_path / "run"
    train(_cfg(images, out, epochs=4, snapshot_every=2))
    snapshots = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snapshots == ["encoder-epoch0002.pt", "encoder-epoch0004.pt"]
    early = load_encoder(out / "snapshots" / "encoder-epoch0002.pt", device="cpu")
    final = load_encoder(out / "encoder.pt", device="cpu")
    last = load_encoder(out / "snapshots" / "encoder-epoch0004.pt", device="cpu")
    assert read_checkpoint(out / "snapshots" / "encoder-epoch0002.pt")["meta"]["epoch"] == 2
    for key, value in final.state_dict().items():
        assert torch.equal(last.state_dict()[key], value), key
    assert not all(torch.equal(early.state_dict()[k], v) for k, v in final.state_dict().items())
