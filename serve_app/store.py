"""The model store: a directory of models, local or behind an object-store URI (pure; no Ray).

Layout: one directory per model id, each with ``model.pt`` (TorchScript, served),
``model.pt2`` (torch.export) and ``card.json`` (the model card)::

    <store>/mnist-cnn/{model.pt, model.pt2, card.json, MODEL_CARD.md}
    <store>/mnist-cnn-inverted/...

The store is a local directory by default (the one baked into the image) or any URI that
fsspec reads: ``s3://bucket/models`` (install ``s3fs``), ``gs://bucket/models`` (``gcsfs``),
``memory://`` in tests. Remote artefacts are copied into a local cache once and checked
against the sha256 in their card before they are loaded.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from serve_app.config import MODELS_DIR
from serve_app.errors import UnknownModelError
from serve_app.training.data import sha256_of

MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SERVED_ARTEFACT = "model.pt"
CARD = "card.json"


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://``, ``gs://``, ``memory://`` ...), False for local paths."""
    return "://" in uri and not uri.startswith("file://")


class ModelStore:
    """Lists models and hands out local paths to their artefacts."""

    def __init__(self, uri: str | Path | None = None, cache_dir: Path | None = None, list_ttl_s: float = 30.0) -> None:
        self.uri = str(uri or MODELS_DIR).rstrip("/")
        self.remote = is_remote(self.uri)
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "mnist-serve-models"
        self.list_ttl_s = list_ttl_s
        self._listed: tuple[float, list[str]] | None = None

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def list_ids(self) -> list[str]:
        """Model ids in the store (directories holding a card), sorted; cached for ``list_ttl_s``."""
        now = time.monotonic()
        if self._listed is not None and now - self._listed[0] < self.list_ttl_s:
            return self._listed[1]
        ids = sorted(
            entry.rstrip("/").rsplit("/", 1)[-1]
            for entry in self.fs.ls(self.root, detail=False)
            if self.fs.isdir(entry) and self.fs.exists(f"{entry.rstrip('/')}/{CARD}")
        )
        self._listed = (now, ids)
        return ids

    def check_id(self, model_id: str) -> str:
        """``model_id`` if the store has it; else :class:`UnknownModelError` listing the known ids."""
        known = self.list_ids()
        if not MODEL_ID_PATTERN.match(model_id) or model_id not in known:
            self._listed = None  # a model added since the last listing is found next time
            known = self.list_ids()
            if model_id not in known:
                raise UnknownModelError(f"unknown model id {model_id!r}; known models: {', '.join(known)}")
        return model_id

    def card(self, model_id: str) -> dict[str, Any]:
        """The model card of one model."""
        self.check_id(model_id)
        with self.fs.open(self._path(model_id, CARD), "rb") as handle:
            return json.loads(handle.read())

    def local_artefact(self, model_id: str, name: str = SERVED_ARTEFACT) -> Path:
        """A local path to one artefact: the file itself, or a verified cached copy of a remote one."""
        card = self.card(model_id)
        if not self.remote:
            return Path(self._path(model_id, name))
        target = self.cache_dir / model_id / name
        expected = card["sha256"][name]
        if target.is_file() and sha256_of(target) == expected:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".partial")
        with self.fs.open(self._path(model_id, name), "rb") as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink)
        actual = sha256_of(partial)
        if actual != expected:
            partial.unlink()
            raise ValueError(f"{self.uri}/{model_id}/{name}: sha256 {actual} does not match its card ({expected})")
        partial.replace(target)
        return target


@dataclass(frozen=True)
class CacheEvent:
    """What one model lookup did to a replica's model cache."""

    hit: bool
    evicted: str | None


class ModelCacheTracker:
    """Mirror of Serve's per-replica LRU model cache, for the hit/load/eviction metrics.

    ``@serve.multiplexed`` keeps up to ``capacity`` models and evicts the least recently
    used one when a new model must be loaded into a full cache; this class applies the
    same rule to model ids only, so each lookup can be counted as a hit, or a load plus
    perhaps an eviction.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def touch(self, model_id: str) -> CacheEvent:
        """Record a lookup of ``model_id``."""
        if model_id in self._ids:
            self._ids.move_to_end(model_id)
            return CacheEvent(hit=True, evicted=None)
        evicted = None
        if len(self._ids) >= self.capacity:
            evicted, _ = self._ids.popitem(last=False)
        self._ids[model_id] = None
        return CacheEvent(hit=False, evicted=evicted)

    @property
    def loaded(self) -> list[str]:
        """Model ids in the cache, least recently used first."""
        return list(self._ids)
