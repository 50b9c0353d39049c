"""The gRPC command-line client's reading of digit files (the calls themselves: tests/integration)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serve_app.config import REPO_ROOT
from serve_app.errors import InvalidInputError
from serve_app.grpc_client import main, predict_request, read_digits

DIGITS_DIR = REPO_ROOT / "examples" / "digits"


def test_pngs_and_integer_json_make_one_raw_uint8_batch():
    pixels = read_digits([DIGITS_DIR / "digit-7.png", DIGITS_DIR / "digits-10.json"])
    assert pixels.dtype == np.uint8 and pixels.shape == (11, 1, 28, 28)
    request = predict_request(pixels)
    assert request.WhichOneof("pixels") == "raw" and len(request.raw) == 11 * 784


def test_a_float_json_body_makes_the_whole_batch_scaled(tmp_path):
    body = tmp_path / "unit.json"
    body.write_text(json.dumps({"image": [[[0.5] * 28] * 28]}))
    pixels = read_digits([DIGITS_DIR / "digit-3.png", body])
    assert pixels.dtype == np.float32 and pixels.max() <= 1.0
    request = predict_request(pixels)
    assert request.WhichOneof("pixels") == "scaled" and len(request.scaled.values) == 2 * 784
    assert request.scaled.values[784] == pytest.approx(0.5)


def test_a_file_that_is_no_digit_is_refused(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(InvalidInputError, match="not a readable PNG or JPEG"):
        read_digits([bad])
    assert main(["--target", "127.0.0.1:1", str(bad)]) == 2
    assert "cannot read the digits" in capsys.readouterr().err


def test_nothing_to_do_is_a_usage_error():
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
