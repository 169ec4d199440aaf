"""Resumable HTTP download with a progress bar (standard library only).

A download writes `<dest>.part` and renames it to `<dest>` once all its bytes are there. An
interrupted transfer (a dropped connection, a kill, Ctrl-C) leaves the `.part` file; the next
attempt asks for the rest with an HTTP Range request. A server that ignores Range (answers 200
to a ranged request) makes the download start over from zero, and says so. Every failure is a
DownloadError with one line of text that says what to do; no traceback reaches the user.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from indexing.coco.archives import REJECTED_SUFFIX

CHUNK = 1 << 20  # bytes read and written at a time
USER_AGENT = "slotcon-explorer (python -m indexing coco)"


class DownloadError(OSError):
    """A download failed; the message is one line and the partial file is kept."""


def part_path(dest: Path) -> Path:
    """Where the bytes of `dest` collect until the download is complete."""
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: str | Path,
    size: int | None = None,
    approx_size: int | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest`, resuming `<dest>.part` if present; returns `dest`.

    size: the exact expected bytes (checked; None = unknown); approx_size: for the bar only.
    retries: further attempts after a dropped connection within this call, each resuming.
    Raises DownloadError (one line) when it cannot finish; the partial file stays.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    for attempt in range(retries + 1):
        try:
            total = _fetch(url, part, size, approx_size, timeout, say, progress)
            break
        except _Dropped as error:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                kept = f"the partial file {part} is kept: " if have else ""
                again = "resume" if have else "try again"
                raise DownloadError(
                    f"download of {dest.name} stopped at {have:,} bytes ({error}); "
                    f"{kept}run the same command again to {again}"
                ) from None
            say(f"{dest.name}: connection lost at {have:,} bytes ({error}); resuming")
            time.sleep(min(2.0**attempt, 10.0) * 0.1)
    got = part.stat().st_size
    if size is not None and got != size:
        aside = dest.with_name(dest.name + REJECTED_SUFFIX)
        os.replace(part, aside)  # ours; a resume from it would only add to the wrong bytes
        raise DownloadError(
            f"{dest.name}: the server sent {got:,} bytes, the published size is {size:,}; "
            f"kept as {aside}: delete it and run again (or check --mirror)"
        )
    if total is not None and got != total:
        raise DownloadError(f"{dest.name}: got {got:,} of {total:,} bytes; run again to resume")
    os.replace(part, dest)
    return dest


class _Dropped(Exception):
    """The connection failed mid-way or could not be made (retried, then DownloadError)."""


def _fetch(url, part: Path, size, approx_size, timeout, say, progress) -> int | None:
    """One request: append the missing bytes to `part`; returns the total size if known."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return size  # complete already (killed between the last byte and the rename)
    if size is not None and have > size:
        say(f"{part.name}: longer than the published size; starting over from zero")
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have and _range_total(error.headers) == have:
            return have  # the server confirms that nothing is missing
        raise DownloadError(
            f"{url}: HTTP {error.code} {error.reason}; check the address (or --mirror), or try "
            f"again later"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise _Dropped(_reason(error)) from None
    with response:
        start = _range_start(response.headers)
        if have and response.status == 206 and start != have:
            raise DownloadError(
                f"{url}: asked for the bytes from {have:,}, the server sent them from {start}; "
                f"delete {part} and run again"
            )
        if have and response.status != 206:
            say(
                f"{part.name}: the server does not support resuming (HTTP Range); "
                f"starting over from zero"
            )
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else size
        _stream(response, part, have, total or approx_size, progress)
    return total


def _stream(response, part: Path, have: int, total: int | None, progress: bool) -> None:
    """Append (or, from zero, write) the response body to `part` with a bytes/rate/ETA bar."""
    mode = "ab" if have else "wb"
    with (
        open(part, mode) as out,
        tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        ) as bar,
    ):
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as error:
            raise _Dropped(_reason(error)) from None
        finally:
            out.flush()
        if expected is not None and received < int(expected):
            raise _Dropped(f"connection closed after {received:,} of {int(expected):,} bytes")


def _range_start(headers) -> int | None:
    """START of a `Content-Range: bytes START-END/N` header, else None."""
    match = re.match(r"\s*bytes\s+(\d+)-", headers.get("Content-Range", "") if headers else "")
    return int(match.group(1)) if match else None


def _range_total(headers) -> int | None:
    """N of a `Content-Range: bytes */N` header, else None."""
    match = re.search(r"/(\d+)\s*$", headers.get("Content-Range", "") if headers else "")
    return int(match.group(1)) if match else None


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, str):
        error = error.reason
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial):,} more bytes"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
