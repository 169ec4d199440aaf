"""SlotCon Explorer web app: python app.py --index DIR [--checkpoint FILE] [--port 7860] ..."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from model.flags import add_config_flags, config_from_args, flag


@dataclass(frozen=True)
class AppSettings:
    """What `python app.py` is started with: one field per flag (model.flags)."""

    index: Path = flag(MISSING, "index directory written by `python -m indexing build`")
    checkpoint: Path | None = flag(
        None,
        "the checkpoint the index was built with; needed for uploads (without it the app "
        "browses the collection only)",
    )
    compare: Path | None = flag(
        None,
        "a second index of the same images (another checkpoint, K may differ): adds a Compare "
        "tab with the prototype correspondence (computed at start, one pass over both indexes' "
        "maps)",
    )
    run: Path | None = flag(
        None,
        "a training run's folder (`python -m model.train --out`, with --snapshot-every): adds "
        "a Timeline tab with its loss curves and, for a prototype of this index, its partner in "
        "every snapshot; the snapshots' indexes are built over this collection at start, in "
        "the background, and cached in --cache",
    )
    image_root: Path | None = flag(
        None,
        "the collection's image folder, when it moved since the build (e.g. the index was "
        "copied to another machine); default: the folder recorded in the index",
    )
    host: str = flag(
        "127.0.0.1",
        "address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes the app to the "
        "network, require a login then)",
    )
    port: int = flag(7860, "port")
    auth_file: Path | None = flag(
        None,
        "require the login USER:PASS on the first line of FILE (recommended whenever --host is "
        "not loopback; or set the environment variable SLOTCON_AUTH=USER:PASS). 5 failed logins "
        "from one address lock it out for 5 minutes",
    )
    auth: str | None = flag(
        None,
        "require this login; other users of this machine can read it with `ps`: prefer "
        "--auth-file or SLOTCON_AUTH",
    )
    cache: Path = flag(Path("cache"), "folder for thumbnails and exports, served to the browser")
    max_upload_mb: float = flag(10.0, "largest upload in MB (a large phone photo)")
    max_pixels: int = flag(40_000_000, "largest upload in pixels, checked before decoding")
    device: str | None = flag(
        None, "torch device for uploads (default: cuda when present, else cpu)"
    )


LOGIN_FLAGS = ("auth_file", "auth")  # one or the other
METAVARS = {"compare": "DIR", "run": "RUN_DIR", "auth_file": "FILE", "auth": "USER:PASS"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Browse the concepts a SlotCon model discovered in an indexed collection.",
    )
    add_config_flags(parser, AppSettings, metavars=METAVARS, omit=LOGIN_FLAGS)
    others = tuple(f.name for f in fields(AppSettings) if f.name not in LOGIN_FLAGS)
    login = parser.add_mutually_exclusive_group()
    add_config_flags(login, AppSettings, metavars=METAVARS, omit=others)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = config_from_args(AppSettings, build_parser().parse_args(argv))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from PIL import Image

    from explorer import ServeConfig, UploadLimits, build_app, launch_options, open_context
    from explorer.auth import read_credentials
    from explorer.comparison import open_comparison
    from explorer.timeline import Timeline

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
        )
        comparison = open_comparison(ctx, args.compare) if args.compare is not None else None
        timeline = Timeline(ctx, args.run, comparison) if args.run is not None else None
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    demo = build_app(ctx, comparison, timeline)
    warm_thumbnails([ctx] + ([comparison.other] if comparison is not None else []))
    if timeline is not None:
        warm_timeline(timeline)
    options = launch_options(
        ctx, args.index, args.checkpoint, args.host, args.port, auth, comparison, timeline
    )
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    print(f"SlotCon Explorer running at {url}  (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def warm_thumbnails(contexts: list) -> threading.Thread:
    """Render, in the background and once (they stay in --cache), the thumbnails of every
    prototype's first gallery, so that opening a prototype hands out files only. The thread
    runs at a lower CPU priority than the requests (Linux: a thread has its own nice value)."""

    def warm() -> None:
        from explorer.thumbnails import warm_top_segments

        with contextlib.suppress(AttributeError, OSError):  # not Linux: same priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        for ctx in contexts:
            try:
                warm_top_segments(ctx, ctx.config.default_k)
            except Exception as error:  # a request renders what is missing, and reports it
                print(f"warning: thumbnails not prepared: {error}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=warm, name="thumbnail-warm-up", daemon=True)
    thread.start()
    return thread


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
    sys.exit(main())
