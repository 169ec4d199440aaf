"""The command line `python app.py`: help, clear errors, a real start with a login."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import http_status

import app

ROOT = Path(__file__).resolve().parents[1]


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--index",
        "--checkpoint",
        "--host",
        "--port",
        "--auth",
        "--auth-file",
        "--cache",
        "--max-upload-mb",
        "--max-pixels",
    ):
        assert option in text
    settings = app.config_from_args(
        app.AppSettings, app.build_parser().parse_args(["--index", "x"])
    )
    assert settings == app.AppSettings(index=Path("x"))
    assert settings.host == "127.0.0.1" and settings.port == 7860 and settings.checkpoint is None


def test_missing_index_is_a_clear_error(tmp_path, capsys):
    args = ["--index", str(tmp_path / "nowhere")]
    assert app.main(args) == 1
    assert "index directory not found" in capsys.readouterr().err


def test_bad_auth_is_refused(tmp_path, capsys, monkeypatch):
    args = ["--index", str(tmp_path), "--auth", "nopassword"]
    assert app.main(args) == 2
    assert "USER:PASS" in capsys.readouterr().err
    args = ["--index", str(tmp_path), "--auth-file", "absent"]
    assert app.main(args) == 2
    assert "cannot read" in capsys.readouterr().err
    monkeypatch.setenv("SLOTCON_AUTH", "nopassword")
    assert app.main(["--index", str(tmp_path)]) == 2
    assert "SLOTCON_AUTH" in capsys.readouterr().err


def test_wrong_checkpoint_is_a_clear_error(explorer_data, tmp_path, capsys):
    other = tmp_path / "other.pt"
    other.write_bytes(explorer_data["checkpoint"].read_bytes() + b"\0")
    args = ["--index", str(explorer_data["index"]), "--checkpoint", str(other)]
    assert app.main(args) == 1
    assert "another checkpoint" in capsys.readouterr().err


def post_login(url: str, user: str, password: str) -> int:
    """The status of a login attempt (Gradio's login form)."""
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        with urllib.request.urlopen(f"{url}/login", data=data, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_app_starts_prints_its_url_and_asks_for_the_login(explorer_data, tmp_path):
    """The login comes from a file (a password on the command line shows in `ps`); after 5
    failed logins a client is refused for a while, even with the right password."""
    from conftest import free_port

    port = free_port()
    login = tmp_path / "login"
    login.write_text("ada:lovelace\n")
    command = [
        sys.executable,
        "app.py",
        "--index",
        str(explorer_data["index"]),
        "--checkpoint",
        str(explorer_data["checkpoint"]),
        "--port",
        str(port),
        "--cache",
        str(tmp_path / "cache"),
        "--auth-file",
        str(login),
    ]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "running at" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, "app.py exited"
        assert f"http://127.0.0.1:{port}" in line
        assert http_status(f"http://127.0.0.1:{port}/") == 200  # the login page
        assert http_status(f"http://127.0.0.1:{port}/config") == 401
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", auth=("ada", "lovelace"), verbose=False)
        gallery, _ = client.predict(0, 2, api_name="/top_segments")
        assert len(gallery) == 2
        assert b"lovelace" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        url = f"http://127.0.0.1:{port}"
        assert [post_login(url, "ada", f"guess {i}") for i in range(5)] == [400] * 5
        assert post_login(url, "ada", "lovelace") == 429
    finally:
        process.terminate()
        process.wait(timeout=30)
