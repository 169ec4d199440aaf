"""SlotCon Explorer web app: python app.py --index DIR [--checkpoint FILE] [--port 7860] ..."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Browse the concepts a SlotCon model discovered in an indexed collection.",
    )
    parser.add_argument(
        "--index",
        required=True,
        type=Path,
        help="index directory written by `python -m indexing build`",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="the checkpoint the index was built with; needed for uploads "
        "(without it the app browses the collection only)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR",
        help="a second index of the same images (another checkpoint, K may differ): adds a "
        "Compare tab with the prototype correspondence (computed at start, one pass over both "
        "indexes' maps)",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="a training run's folder (`python -m model.train --out`, with --snapshot-every): "
        "adds a Timeline tab with its loss curves and, for a prototype of this index, its "
        "partner in every snapshot; the snapshots' indexes are built over this collection at "
        "start, in the background, and cached in --cache",
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="the collection's image folder, when it moved since the build (e.g. the index was "
        "copied to another machine); default: the folder recorded in the index",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; "
        "0.0.0.0 exposes the app to the network, require a login then)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    login = parser.add_mutually_exclusive_group()
    login.add_argument(
        "--auth-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="require the login USER:PASS on the first line of FILE (recommended whenever "
        "--host is not loopback; or set the environment variable SLOTCON_AUTH=USER:PASS). "
        "5 failed logins from one address lock it out for 5 minutes",
    )
    login.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASS",
        help="require this login; other users of this machine can read it with `ps`: prefer "
        "--auth-file or SLOTCON_AUTH",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("cache"),
        help="folder for thumbnails and exports, served to the browser (default ./cache)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        help="largest upload in MB (default 10: a large phone photo)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest upload in pixels, checked before decoding (default 40M)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device for uploads (default: cuda when present, else cpu)",
    )
    return parser


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from PIL import Image

    from explorer import ServeConfig, UploadLimits, build_app, launch_options, open_context
    from explorer.auth import read_credentials

    try:
        auth = read_credentials(args.auth, args.auth_file, os.environ)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        print(
            f"warning: listening on {args.host} without a login (--auth-file): anyone who can "
            "reach this machine can use the app",
            file=sys.stderr,
        )
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels)
    # PIL refuses (not just warns about) anything above twice this: a guard for every decode
    Image.MAX_IMAGE_PIXELS = max(limits.max_pixels, 1)
    try:
        ctx = open_context(
            args.index,
            args.checkpoint,
            args.cache,
            ServeConfig(limits=limits),
            device=args.device,
            image_root=args.image_root,
            compare=args.compare,
            run=args.run,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    demo = build_app(ctx)
    if ctx.timeline is not None:
        warm_timeline(ctx.timeline)
    options = launch_options(ctx, args.index, args.checkpoint, args.host, args.port, auth)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    print(f"SlotCon Explorer running at {url}  (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def warm_timeline(timeline) -> threading.Thread:
    """Build the snapshots' missing indexes in the background, so that the Timeline tab is
    ready when a user opens it (opening it earlier waits for this, with progress shown)."""

    def warm() -> None:
        try:
            timeline.stages()
        except Exception as error:  # the tab reports it again, to the user who opens it
            print(f"warning: timeline not prepared: {error}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=warm, name="timeline-warm-up", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
