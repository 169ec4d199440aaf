"""Command-line flags generated from config dataclasses: one field, one flag, its help the
field's, so that a config and its command line never drift apart. Used by `python -m
model.train` (TrainConfig, ModelConfig), `python -m indexing build` (BuildConfig) and app.py
(app.AppSettings). No torch here: `--help` answers at once.

    @dataclass(frozen=True)
    class Settings:
        port: int = flag(7860, "port to listen on")

    add_config_flags(parser, Settings)                 # --port, with its help and default
    settings = config_from_args(Settings, parser.parse_args(argv))
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def flag(default, help: str, **field_options):
    """A dataclass field whose help text is also its flag's --help."""
    return dataclasses.field(default=default, metadata={"help": help}, **field_options)


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    choices: dict[str, tuple] | None = None,
    metavars: dict[str, str] | None = None,
    omit: tuple[str, ...] = (),
    unset: str | None = None,
    notes: dict[str, str] | None = None,
) -> None:
    """One flag per field of the dataclass `cls` (--batch-size for batch_size), its help the
    field's metadata["help"] and its default the field's.

    Fields without a default are required flags; bool: a switch (store_true; --x / --no-x when
    on by default); tuple[X, ...]: one or more X; X | None: an optional X. `omit`: fields with
    no flag. `unset`: every flag defaults to None instead (the caller fills in, e.g. a preset's
    value) and its help ends with "(unset)"; `notes` replaces that text per field.
    config_from_args(cls, args) reads the flags back."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in omit:
            continue
        kind, options = hints[f.name], {"help": f.metadata.get("help", "")}
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if unset is not None:
            options["default"] = None
            options["help"] += f" ({(notes or {}).get(f.name, unset)})"
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            options["required"] = True
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            options["default"] = default
            if default not in (None, "", (), False):
                options["help"] += f" (default: {default})"
        if kind is bool:  # a switch; --x / --no-x when it is on by default
            on = options.get("default") is True
            options["action"] = argparse.BooleanOptionalAction if on else "store_true"
        elif typing.get_origin(kind) is tuple:
            options.update(type=typing.get_args(kind)[0], nargs="+")
        else:
            options["type"] = kind
        if f.name in (choices or {}):
            options["choices"] = choices[f.name]
        if f.name in (metavars or {}):
            options["metavar"] = metavars[f.name]
        parser.add_argument("--" + f.name.replace("_", "-"), **options)


def config_from_args(cls: type, args: argparse.Namespace):
    """The dataclass `cls` from the flags of add_config_flags (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
