"""model.runtimes: the network by another runtime computes the same features up to rounding; a
build records its runtime; unknown names and missing packages get a clear error."""

from __future__ import annotations

import builtins
import json

import pytest
import torch
from PIL import Image

from indexing import BuildConfig, build_index
from model.checkpoint import load_encoder
from model.runtimes import RUNTIMES


def test_channels_last_features_match_eager_to_rounding(photos):
    eager = load_encoder("assets/demo_encoder.pt", "cpu")
    other = load_encoder("assets/demo_encoder.pt", "cpu").use_runtime("channels-last")
    assert other.runtime == "channels-last" and eager.runtime == "eager"
    for path in photos[:3]:
        x, _ = eager.preprocess(Image.open(path).convert("RGB"))
        torch.testing.assert_close(other.features(x), eager.features(x), atol=1e-5, rtol=1e-5)


def test_openvino_features_match_eager_to_rounding(photos):
    pytest.importorskip("openvino")
    eager = load_encoder("assets/demo_encoder.pt", "cpu")
    other = load_encoder("assets/demo_encoder.pt", "cpu").use_runtime("openvino")
    for path in photos[:2]:  # two sizes: one converted model takes every shape
        x, _ = eager.preprocess(Image.open(path).convert("RGB"))
        torch.testing.assert_close(other.features(x), eager.features(x), atol=1e-4, rtol=1e-4)


def test_openvino_missing_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def without_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    encoder = load_encoder("assets/demo_encoder.pt", "cpu")
    with pytest.raises(RuntimeError, match="pip install openvino"):
        encoder.use_runtime("openvino")


def test_unknown_runtime_is_refused(tmp_path):
    with pytest.raises(ValueError, match="runtime must be one of"):
        BuildConfig(checkpoint=tmp_path, images=tmp_path, out=tmp_path / "i", runtime="tvm")
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_encoder("assets/demo_encoder.pt", "cpu").use_runtime("tvm")
    assert RUNTIMES[0] == "eager"


def test_build_records_its_runtime(photos, tmp_path):
    out = tmp_path / "index"
    build_index(
        BuildConfig(
            checkpoint="assets/demo_encoder.pt",
            images=photos[0].parent,
            out=out,
            workers=0,
            runtime="channels-last",
        )
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["build"]["runtime"] == "channels-last"
    assert manifest["counts"]["images"] == len(photos)


def test_a_runtime_adds_no_weights_to_the_encoder():
    encoder = load_encoder("assets/demo_encoder.pt", "cpu")
    names = list(encoder.state_dict())
    for runtime in ("eager", "channels-last"):
        encoder.use_runtime(runtime)
        assert list(encoder.state_dict()) == names, runtime
