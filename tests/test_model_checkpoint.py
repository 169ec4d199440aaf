"""Checkpoints: round trips, the published layout, broken or foreign files, atomic saves."""

from __future__ import annotations

import argparse
import collections
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import CheckpointError, load_encoder
from model.atomic import write_atomic, write_bytes_atomic
from model.checkpoint import encoder_checkpoint, read_checkpoint, save_atomic, teacher_state
from model.config import TINY, ModelConfig, override
from model.slotcon import SlotCon
from model.train import train

torch.set_num_threads(1)

PUBLISHED = ModelConfig(arch="resnet18", dim_hidden=64, dim_out=32, num_prototypes=16)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished one-epoch TINY training run (last.pt, encoder.pt)."""
    root = tmp_path_factory.mktemp("ckpt")
    rng = np.random.default_rng(1)
    (root / "images").mkdir()
    for i in range(8):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((40, 40), Image.Resampling.BILINEAR)
        image.save(root / "images" / f"{i}.png")
    cfg = override(
        TINY, data=str(root / "images"), out=str(root / "run"), epochs=1, workers=0, device="cpu"
    )
    return train(cfg)


def _dots(encoder, x: torch.Tensor) -> torch.Tensor:
    return encoder(x).dots


# ---------------------------------------------------------------- this project's files


def test_encoder_and_training_checkpoints_give_the_same_encoder(run):
    from_encoder = load_encoder(run / "encoder.pt", device="cpu")
    from_last = load_encoder(run / "last.pt", device="cpu")
    assert from_encoder.cfg == from_last.cfg == TINY.model
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 64)
    a, b = from_encoder(x), from_last(x)
    assert a.dots.shape == (2, TINY.model.num_prototypes, 3, 4)
    assert torch.equal(a.dots, b.dots) and torch.equal(a.slots, b.slots)
    # and it is the teacher of the trained model (in eval mode), not the student
    model = SlotCon(TINY.model)
    model.load_state_dict(read_checkpoint(run / "last.pt")["model"])
    model.eval()
    with torch.no_grad():
        teacher = model.grouping_k(model.projector_k(model.encoder_k(x))).dots
        student = model.grouping_q(model.projector_q(model.encoder_q(x))).dots
    torch.testing.assert_close(a.dots, teacher)
    assert not torch.allclose(a.dots, student, atol=1e-4)


def test_encoder_checkpoint_contents(run):
    ckpt = read_checkpoint(run / "encoder.pt")
    assert ckpt["kind"] == "encoder" and ckpt["meta"]["epoch"] == 1
    assert set(ckpt["encoder"]) == set(load_encoder(run / "encoder.pt", "cpu").state_dict())
    assert not any(k.startswith(("encoder_q", "predictor")) for k in ckpt["encoder"])


def test_weights_that_do_not_fit_the_config_raise(run, tmp_path):
    ckpt = read_checkpoint(run / "encoder.pt")
    ckpt["model_config"]["num_prototypes"] = TINY.model.num_prototypes + 1
    save_atomic(ckpt, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_encoder(tmp_path / "wrong.pt", device="cpu")


# ---------------------------------------------------------------- the published layout


def _published_file(path: Path, cfg: ModelConfig = PUBLISHED) -> SlotCon:
    """Write a checkpoint in the authors' layout; returns the source module (eval mode)."""
    torch.manual_seed(0)
    model = SlotCon(cfg)
    with torch.no_grad():  # a teacher unlike the student, with non-trivial BN statistics
        for name, t in model.state_dict().items():
            if "_k." in name and t.dtype.is_floating_point:
                if "running_var" in name:
                    t.uniform_(0.5, 2.0)
                else:
                    t.add_(0.05 * torch.randn_like(t))
    state = {"module." + k: v for k, v in model.state_dict().items()}
    args = argparse.Namespace(
        arch=cfg.arch,
        dim_hidden=cfg.dim_hidden,
        dim_out=cfg.dim_out,
        num_prototypes=cfg.num_prototypes,
        teacher_temp=0.07,
    )
    torch.save({"args": args, "model": state, "optimizer": {}, "epoch": 800}, path)
    return model.eval()


def test_published_checkpoint_loads_and_gives_the_teacher_dots(tmp_path):
    path = tmp_path / "slotcon_coco_r50_800ep.pth"
    source = _published_file(path)
    encoder = load_encoder(path, device="cpu")
    assert encoder.cfg.arch == "resnet18" and encoder.cfg.width == 1.0
    assert encoder.num_prototypes == 16 and encoder.cfg.dim_out == 32
    assert encoder.cfg.dim_hidden == 64 and encoder.stride == 32
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = source.grouping_k(source.projector_k(source.encoder_k(x)))
        student = source.grouping_q(source.projector_q(source.encoder_q(x)))
    out = encoder(x)
    assert out.dots.shape == (2, 16, 2, 3)
    torch.testing.assert_close(out.dots, expected.dots, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.slots, expected.slots, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out.dots, student.dots, atol=1e-3)
    torch.testing.assert_close(
        encoder.prototypes, torch.nn.functional.normalize(source.grouping_k.slot_embed.weight)
    )


def test_incomplete_published_checkpoint_raises(tmp_path):
    path = tmp_path / "published.pth"
    _published_file(path)
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model"]["module.grouping_k.slot_embed.weight"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="incomplete published checkpoint"):
        load_encoder(path, device="cpu")


def test_teacher_state_renames_only_teacher_parts():
    state = {
        "module.encoder_k.conv1.weight": 1,
        "module.encoder_q.conv1.weight": 2,
        "module.projector_k.mlp.0.bias": 3,
        "module.grouping_k.slot_embed.weight": 4,
        "module.predictor_slot.mlp.0.weight": 5,
        "module.center": 6,
    }
    assert teacher_state(state, prefix="module.") == {
        "backbone.conv1.weight": 1,
        "projector.mlp.0.bias": 3,
        "grouping.slot_embed.weight": 4,
    }


# ---------------------------------------------------------------- broken and foreign files


def test_missing_file_raises(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "absent.pt")


def test_truncated_file_raises(run, tmp_path):
    data = (run / "encoder.pt").read_bytes()
    for cut in (len(data) // 2, 100, 0):
        path = tmp_path / "cut.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
            load_encoder(path, device="cpu")


def _write_marker(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class Payload:
    """Unpickling an instance would call _write_marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (self.marker,))


class SneakyDict(collections.OrderedDict):
    def __setstate__(self, state):
        _write_marker(state["marker"])


@pytest.mark.parametrize("kind", ["reduce", "dict_subclass"])
def test_foreign_objects_are_refused_without_running_code(tmp_path, kind):
    marker = tmp_path / "marker.txt"
    if kind == "reduce":
        obj = {"model": {"x": torch.zeros(2)}, "extra": Payload(str(marker))}
    else:
        sneaky = SneakyDict(x=torch.zeros(2))
        sneaky.__dict__["marker"] = str(marker)
        obj = {"model": sneaky}
    path = tmp_path / "foreign.pt"
    torch.save(obj, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_encoder(path, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"state_dict": {"conv.weight": torch.zeros(2, 2)}}, "not a SlotCon checkpoint"),
        ({"model": {"fc.weight": torch.zeros(2, 2)}}, "not a SlotCon checkpoint"),
        ([torch.zeros(3)], r"not a SlotCon checkpoint \(a list\)"),
        (torch.zeros(3), r"not a SlotCon checkpoint \(a Tensor\)"),
    ],
)
def test_other_torch_files_raise(tmp_path, obj, message):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        load_encoder(path, device="cpu")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# ---------------------------------------------------------------- atomic saves


def test_save_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    save_atomic({"a": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_save_atomic_keeps_the_old_file_when_saving_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_atomic({"version": torch.tensor(1)}, path)
    before = path.read_bytes()
    # torch.save writes the tensor, then fails on the object it cannot pickle
    bad = {"big": torch.zeros(10_000), "unpicklable": lambda: None}
    with pytest.raises(Exception):  # noqa: B017 (pickling errors differ between versions)
        save_atomic(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_atomic_writes_give_an_ordinary_files_mode_without_touching_the_umask(
    tmp_path, monkeypatch
):
    """The app writes from request threads: reading the umask by setting it would race."""
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    expected = stat.S_IMODE(ordinary.stat().st_mode)

    def no_umask(mask):
        raise AssertionError("the process umask must not be changed")

    monkeypatch.setattr(os, "umask", no_umask)
    save_atomic({"a": torch.arange(3)}, tmp_path / "ckpt.pt")
    write_bytes_atomic(tmp_path / "table.bin", b"abc")
    write_bytes_atomic(tmp_path / "cache.bin", b"abc", durable=False)
    for name in ("ckpt.pt", "table.bin", "cache.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert (tmp_path / "table.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cache.bin",
        "ckpt.pt",
        "ordinary",
        "table.bin",
    ]


def test_write_bytes_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "table.bin"
    write_bytes_atomic(path, b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_encoder_checkpoint_round_trip_without_training(tmp_path):
    cfg = TINY.model
    torch.manual_seed(0)
    model = SlotCon(cfg)
    save_atomic(
        encoder_checkpoint(cfg, teacher_state(model.state_dict()), note="x"), tmp_path / "e.pt"
    )
    encoder = load_encoder(tmp_path / "e.pt", device="cpu")
    for name, value in teacher_state(model.state_dict()).items():
        assert torch.equal(encoder.state_dict()[name], value), name


# ---------------------------------------------------------------- malformed files of our format


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """A valid encoder checkpoint dict (TINY shape), and a valid training one."""
    torch.manual_seed(0)
    state = SlotCon(TINY.model).state_dict()
    encoder = encoder_checkpoint(TINY.model, teacher_state(state))
    training = {"format": "slotcon-explorer", "version": 1, "kind": "training",
                "config": {"model": dict(encoder["model_config"])}, "model": state}  # fmt: skip
    return {"encoder": encoder, "training": training}


def _cfg_change(**changes):
    return lambda ckpt: ckpt["model_config"].update(changes)


def _published_change(key: str, value):
    return lambda ckpt: ckpt["model"].__setitem__(key, value)


MALFORMED = {
    "no model_config": (lambda c: c.pop("model_config"), "'model_config' is missing"),
    "model_config None": (lambda c: c.update(model_config=None), "'model_config' is None"),
    "model_config a list": (lambda c: c.update(model_config=[8]), "'model_config' is a list"),
    "no weights": (lambda c: c.pop("encoder"), "'encoder' is missing"),
    "weights a list": (lambda c: c.update(encoder=[1]), "'encoder' is a list"),
    "weight not a tensor": (
        lambda c: c["encoder"].update({"grouping.slot_embed.weight": "x"}),
        "'grouping.slot_embed.weight' is a str, not a tensor",
    ),
    "K a string": (_cfg_change(num_prototypes="8"), "num_prototypes"),
    "K a float": (_cfg_change(num_prototypes=8.5), "num_prototypes"),
    "K a bool": (_cfg_change(num_prototypes=True), "num_prototypes"),
    "K 2**40": (_cfg_change(num_prototypes=2**40), "num_prototypes"),
    "D 0": (_cfg_change(dim_out=0), "dim_out"),
    "D 2**31": (_cfg_change(dim_out=2**31), "dim_out"),
    "width huge": (_cfg_change(width=1e9), "width"),
    "width a string": (_cfg_change(width="wide"), "width"),
    "width NaN": (_cfg_change(width=float("nan")), "width"),
    "hidden huge": (_cfg_change(dim_hidden=2**40), "dim_hidden"),
    "temperature 0": (_cfg_change(teacher_temp=0.0), "teacher_temp"),
    "unknown arch": (_cfg_change(arch="resnet1000"), "arch"),
    "stride 7": (_cfg_change(output_stride=7), "output_stride"),
    "K disagrees with the weights": (_cfg_change(num_prototypes=9), "do not fit"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_encoder_files_raise_checkpoint_error(good, tmp_path, case):
    import copy

    change, message = MALFORMED[case]
    ckpt = copy.deepcopy(good["encoder"])
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message) as caught:
        load_encoder(tmp_path / "bad.pt", device="cpu")
    assert "bad.pt" in str(caught.value)


TRAINING_MALFORMED = {
    "no config": (lambda c: c.pop("config"), "'config' is missing"),
    "config a string": (lambda c: c.update(config="tiny"), "'config' is a str"),
    "no model config": (lambda c: c["config"].pop("model"), "'config.model' is missing"),
    "model config None": (lambda c: c["config"].update(model=None), "'config.model' is None"),
    "weights None": (lambda c: c.update(model=None), "'model' is None"),
    "K a string": (lambda c: c["config"]["model"].update(num_prototypes="8"), "num_prototypes"),
}


@pytest.mark.parametrize("case", sorted(TRAINING_MALFORMED))
def test_malformed_training_files_raise_checkpoint_error(good, tmp_path, case):
    import copy

    change, message = TRAINING_MALFORMED[case]
    ckpt = copy.deepcopy(good["training"])
    change(ckpt)
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=message):
        load_encoder(tmp_path / "last.pt", device="cpu")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("module.grouping_k.slot_embed.weight", torch.zeros(16), "slot_embed"),
        ("module.projector_k.mlp.0.weight", "weights", "not a tensor"),
        ("module.encoder_k.conv1.weight", torch.zeros(64), "conv1"),
    ],
)
def test_malformed_published_files_raise_checkpoint_error(tmp_path, key, value, message):
    path = tmp_path / "published.pth"
    _published_file(path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["model"][key] = value
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message):
        load_encoder(path, device="cpu")
    ckpt["model"][key] = torch.zeros(1)
    ckpt["args"].teacher_temp = "hot"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError):
        load_encoder(path, device="cpu")


def test_shapes_are_checked_before_the_network_is_built(good, tmp_path, monkeypatch):
    """A config that disagrees with its weights builds nothing outside the meta device."""
    import copy

    import model.encoder as encoder_module

    devices = []
    real = encoder_module.build_backbone

    def spy(cfg):
        devices.append(torch.empty(0).device.type)
        return real(cfg)

    monkeypatch.setattr(encoder_module, "build_backbone", spy)
    ckpt = copy.deepcopy(good["encoder"])
    ckpt["model_config"]["dim_hidden"] = 48  # the projector's weights are 32 wide
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="projector"):
        load_encoder(tmp_path / "bad.pt", device="cpu")
    assert set(devices) <= {"meta"}
    devices.clear()
    torch.save(good["encoder"], tmp_path / "good.pt")
    load_encoder(tmp_path / "good.pt", device="cpu")
    assert devices[-1] == "cpu"
