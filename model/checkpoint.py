"""Checkpoint files: this project's self-describing format and the published SlotCon format,
and load_encoder, which builds the inference encoder from any of them.

Everything is read with torch.load(weights_only=True); only argparse.Namespace (the published
files' 'args') is allow-listed, so a file that needs any other Python object is refused before
anything of it runs. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import argparse
import math
import pickle
from dataclasses import asdict, fields
from pathlib import Path

import torch

from model.atomic import write_atomic
from model.backbone import infer_backbone
from model.config import ModelConfig, model_config_from_dict
from model.encoder import SlotConEncoder

FORMAT = "slotcon-explorer"
VERSION = 1
# teacher module names in the SlotCon module -> names in the inference encoder
TEACHER_PARTS = {
    "encoder_k.": "backbone.",
    "projector_k.": "projector.",
    "grouping_k.": "grouping.",
}


# Upper bounds on a model read from a file: far above any real SlotCon (paper: K 256, D 256,
# hidden width 4096, width 1), far below sizes whose allocation would exhaust memory. K also
# fits the int16 assignment maps.
MODEL_LIMITS = {"num_prototypes": 32767, "dim_out": 65536, "dim_hidden": 65536, "width": 16.0}
_TYPES = {"int": int, "float": float, "str": str}  # ModelConfig's field annotations


class CheckpointError(ValueError):
    """The file is missing, unreadable, foreign or not a SlotCon checkpoint."""


def save_atomic(obj: dict, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(obj, f))


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


def _published_config(model_state: dict, args, name: str) -> ModelConfig:
    """Model shape of a published full checkpoint, read off its weights."""
    embed = model_state["module.grouping_k.slot_embed.weight"]
    if embed.ndim != 2 or model_state["module.encoder_k.conv1.weight"].ndim != 4:
        raise CheckpointError(
            f"{name}: malformed published checkpoint: slot_embed.weight {tuple(embed.shape)} "
            "must be (K, D) and encoder_k.conv1.weight 4-dimensional"
        )
    arch, width = infer_backbone(model_state, "module.encoder_k.")
    dim_out, K = embed.shape[1::-1]
    teacher_temp = getattr(args, "teacher_temp", 0.07)
    values = {
        "arch": arch,
        "width": width,
        "dim_hidden": model_state["module.projector_k.mlp.0.weight"].shape[0],
        "dim_out": dim_out,
        "num_prototypes": K,
        "teacher_temp": float(teacher_temp) if isinstance(teacher_temp, int) else teacher_temp,
    }
    return model_config_from_file(values, name)


def model_config_from_file(values: object, name: str = "checkpoint") -> ModelConfig:
    """ModelConfig from a checkpoint's dict; CheckpointError on wrong types, unknown values or
    sizes beyond MODEL_LIMITS, so that nothing is allocated for a corrupt or crafted file."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{name}: malformed model config: {_describe(values)}, not a dict")
    for f in fields(ModelConfig):
        if f.name not in values:
            continue  # a file of an older version: the default
        value, kind = values[f.name], _TYPES[str(f.type)]
        accepted = (int, float) if kind is float else kind  # 1 is a fine width
        if not isinstance(value, accepted) or isinstance(value, bool):
            raise CheckpointError(
                f"{name}: malformed model config: {f.name} is {value!r}, not a {kind.__name__}"
            )
        if kind is float and not math.isfinite(value):
            raise CheckpointError(f"{name}: malformed model config: {f.name} is {value}")
        limit = MODEL_LIMITS.get(f.name)
        if limit is not None and not 0 < value <= limit:
            raise CheckpointError(
                f"{name}: model config {f.name} = {value} is outside (0, {limit}]: a corrupt file?"
            )
        if f.name.endswith("_temp") and value <= 0:
            raise CheckpointError(f"{name}: model config {f.name} = {value} must be > 0")
    try:
        return model_config_from_dict(values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: malformed model config: {error}") from error


def _describe(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _field(obj: dict, key: str, name: str, where: str = "") -> dict:
    """obj[key], which must be a dict (CheckpointError naming the key otherwise)."""
    if key not in obj:
        raise CheckpointError(f"{name}: malformed checkpoint: '{where}{key}' is missing")
    if not isinstance(obj[key], dict):
        raise CheckpointError(
            f"{name}: malformed checkpoint: '{where}{key}' is {_describe(obj[key])}, "
            "expected a dict"
        )
    return obj[key]


def _weights(state: dict, name: str) -> dict:
    """A state dict of tensors (CheckpointError naming the first entry that is not)."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: malformed checkpoint: weight '{key}' is {_describe(value)}, not a tensor"
            )
    return state


def encoder_weights(ckpt: dict, name: str = "checkpoint") -> tuple[ModelConfig, dict]:
    """(ModelConfig, encoder state dict of tensors) from any supported checkpoint dict.

    Checks the structure, types and bounds of what it reads (CheckpointError); whether the
    weights' shapes fit the config is load_encoder's check."""
    if ckpt.get("format") == FORMAT:
        if ckpt.get("kind") == "encoder":
            cfg = model_config_from_file(_field(ckpt, "model_config", name), name)
            return cfg, _weights(_field(ckpt, "encoder", name), name)
        if ckpt.get("kind") == "training":
            model_cfg = _field(_field(ckpt, "config", name), "model", name, where="config.")
            cfg = model_config_from_file(model_cfg, name)
            return cfg, teacher_state(_weights(_field(ckpt, "model", name), name))
    state = ckpt.get("model")
    if isinstance(state, dict) and "module.encoder_k.conv1.weight" in state:
        try:
            cfg = _published_config(_weights(state, name), ckpt.get("args"), name)
        except KeyError as error:
            raise CheckpointError(f"{name}: incomplete published checkpoint: {error}") from error
        return cfg, teacher_state(state, prefix="module.")
    keys = ", ".join(list(ckpt)[:6])
    raise CheckpointError(
        f"{name}: not a SlotCon checkpoint (expected this project's format or the published "
        f"full checkpoint with 'model' -> 'module.encoder_k.*'; found keys: {keys})"
    )


def load_encoder(
    path: str | Path,
    device: str | torch.device | None = None,
    input_size: int | None = None,
    precision: str = "fp32",
) -> SlotConEncoder:
    """Load this project's checkpoints (training or encoder) or a published full checkpoint.

    The architecture, K and D are read from the file. The device defaults to CUDA when present;
    precision is fp32 or bf16 (autocast), see model.encoder.PRECISIONS.
    Raises CheckpointError for missing, truncated, foreign, malformed or mismatching files;
    the weights' names and shapes are checked before the network is allocated.
    """
    ckpt = read_checkpoint(path)
    cfg, state = encoder_weights(ckpt, Path(path).name)
    check_weights_fit(cfg, state, Path(path).name)
    encoder = SlotConEncoder(cfg, input_size, precision)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{Path(path).name}: weights do not fit the model: {error}"
        ) from error
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return encoder.to(device)


def check_weights_fit(cfg: ModelConfig, state: dict, name: str = "checkpoint") -> None:
    """CheckpointError unless `state` has exactly the names and shapes of an encoder of `cfg`.

    The reference is built on the meta device: no memory, whatever the config claims (a file
    whose config says K = 2**40 beside weights for K = 8 allocates nothing)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SlotConEncoder(cfg).state_dict().items()}
    problems = [f"missing {k}" for k in sorted(expected.keys() - state.keys())]
    problems += [f"unexpected {k}" for k in sorted(state.keys() - expected.keys())]
    problems += [
        f"{k} is {tuple(state[k].shape)} in the file, {shape} for the config"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{name}: weights do not fit the model of its config ({cfg.arch}, K "
            f"{cfg.num_prototypes}, D {cfg.dim_out}): {'; '.join(problems[:3])}{more}"
        )
