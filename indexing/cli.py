"""Command lines: python -m indexing {build, evaluate, figure, compare, coco} (--help of each).

    python -m indexing build --checkpoint assets/demo_encoder.pt --images data/scenes/val \\
        --annotations data/scenes/annotations/instances_val.json --out data/index-demo
    torchrun --nproc_per_node=4 -m indexing build ...        # one process per GPU
    python -m indexing evaluate --index data/index-demo --out-json scores.json
    python -m indexing figure --index data/index-demo --out prototypes.png --k 5
    python -m indexing compare --index data/index-demo --index data/index-other --out cmp/
    python -m indexing coco --checkpoint slotcon_coco_r50_800ep.pth   # COCO val2017 + index

Bad input (missing checkpoint, empty folder, an index of another model ...) prints
`error: ...` and exits with status 1; bad arguments exit with status 2.

Each command lives beside what it runs, in a module with add_parser(subparsers) and run(args);
COMMANDS lists them, and a new command is one more entry there.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

COMMANDS = {  # name -> module with add_parser(subparsers) and run(args), in --help order
    "build": "indexing.build.cli",  # images -> an index directory
    "evaluate": "indexing.evaluate_cli",  # an index -> segmentation scores
    "figure": "indexing.figure_cli",  # an index -> the paper's Figure 3 as a PNG
    "compare": "indexing.compare.cli",  # two indexes -> their prototypes' correspondence
    "coco": "indexing.coco.command",  # COCO val2017 downloaded, unpacked -> an index directory
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m indexing",
        description="Index an image collection with a SlotCon model, score it, draw it.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}"
    )
    for module in COMMANDS.values():
        import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 1 a known error (`error: ...` on
    stderr), 2 bad arguments (argparse's, or argparse.ArgumentTypeError from a command that
    converts its flags to a config), 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import_module(COMMANDS[args.command]).run(args)
    except argparse.ArgumentTypeError as error:  # a value the command's config refuses
        parser.error(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0
