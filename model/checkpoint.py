"""Checkpoint files: this project's self-describing format and the published SlotCon format.

Everything is read with torch.load(weights_only=True); only argparse.Namespace (the published
files' 'args') is allow-listed, so a file that needs any other Python object is refused before
anything of it runs. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from model.backbone import infer_backbone
from model.config import ModelConfig, model_config_from_dict

FORMAT = "slotcon-explorer"
VERSION = 1
# teacher module names in the SlotCon module -> names in the inference encoder
TEACHER_PARTS = {
    "encoder_k.": "backbone.",
    "projector_k.": "projector.",
    "grouping_k.": "grouping.",
}


class CheckpointError(ValueError):
    """The file is missing, unreadable, foreign or not a SlotCon checkpoint."""


def save_atomic(obj: dict, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely on the CPU; CheckpointError with the reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(
            f"{path.name}: refused: unpickling it would need Python objects outside the "
            f"allow-list ({reason})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path.name}: not a readable checkpoint (truncated or corrupt?): {error}"
        ) from error
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name}: not a SlotCon checkpoint (a {type(obj).__name__})")
    return obj


def encoder_checkpoint(model_cfg: ModelConfig, encoder_state: dict, **meta) -> dict:
    """The small inference-only format: teacher weights + model config (+ free-form meta)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "encoder",
        "model_config": asdict(model_cfg),
        "encoder": encoder_state,
        "meta": meta,
    }


def teacher_state(model_state: dict, prefix: str = "") -> dict:
    """Teacher weights of a SlotCon state dict, renamed for the encoder (backbone., ...)."""
    out = {}
    for key, value in model_state.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is None:
            continue
        for teacher, target in TEACHER_PARTS.items():
            if name.startswith(teacher):
                out[target + name[len(teacher) :]] = value
    return out


def _published_config(model_state: dict, args) -> ModelConfig:
    """Model shape of a published full checkpoint, read off its weights."""
    arch, width = infer_backbone(model_state, "module.encoder_k.")
    hidden = model_state["module.projector_k.mlp.0.weight"].shape[0]
    dim_out, K = model_state["module.grouping_k.slot_embed.weight"].shape[1::-1]
    teacher_temp = float(getattr(args, "teacher_temp", 0.07))
    return ModelConfig(
        arch=arch,
        width=width,
        dim_hidden=hidden,
        dim_out=dim_out,
        num_prototypes=K,
        teacher_temp=teacher_temp,
    )


def encoder_weights(ckpt: dict, name: str = "checkpoint") -> tuple[ModelConfig, dict]:
    """(ModelConfig, encoder state dict) from any supported checkpoint dict."""
    if ckpt.get("format") == FORMAT:
        if ckpt.get("kind") == "encoder":
            return model_config_from_dict(ckpt["model_config"]), ckpt["encoder"]
        if ckpt.get("kind") == "training":
            cfg = model_config_from_dict(ckpt["config"]["model"])
            return cfg, teacher_state(ckpt["model"])
    state = ckpt.get("model")
    if isinstance(state, dict) and "module.encoder_k.conv1.weight" in state:
        try:
            cfg = _published_config(state, ckpt.get("args"))
        except KeyError as error:
            raise CheckpointError(f"{name}: incomplete published checkpoint: {error}") from error
        return cfg, teacher_state(state, prefix="module.")
    keys = ", ".join(list(ckpt)[:6])
    raise CheckpointError(
        f"{name}: not a SlotCon checkpoint (expected this project's format or the published "
        f"full checkpoint with 'model' -> 'module.encoder_k.*'; found keys: {keys})"
    )
