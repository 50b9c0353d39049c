import json
import shutil

import fsspec
import pytest

from serve_app.config import DEFAULT_MODEL_ID, MODELS_DIR
from serve_app.errors import UnknownModelError
from serve_app.model import load_model
from serve_app.store import ModelCacheTracker, ModelStore, is_remote


def test_local_store_lists_the_shipped_models():
    store = ModelStore()
    ids = store.list_ids()
    assert DEFAULT_MODEL_ID in ids
    assert ids == sorted(path.name for path in MODELS_DIR.iterdir() if (path / "card.json").is_file())
    assert store.local_artefact(DEFAULT_MODEL_ID) == MODELS_DIR / DEFAULT_MODEL_ID / "model.pt"


@pytest.mark.parametrize("model_id", ["nope", "../mnist-cnn", "mnist-cnn/../x", "", " mnist-cnn"])
def test_unknown_ids_are_a_404_listing_the_known_ones(model_id):
    with pytest.raises(UnknownModelError, match=f"known models: .*{DEFAULT_MODEL_ID}"):
        ModelStore().check_id(model_id)


def test_a_model_added_after_listing_is_found(tmp_path):
    shutil.copytree(MODELS_DIR / DEFAULT_MODEL_ID, tmp_path / "first")
    store = ModelStore(tmp_path, list_ttl_s=3600)
    assert store.list_ids() == ["first"]
    shutil.copytree(MODELS_DIR / DEFAULT_MODEL_ID, tmp_path / "second")
    assert store.check_id("second") == "second"


@pytest.fixture
def memory_store(tmp_path):
    """The default model uploaded to an fsspec in-memory object store."""
    fs = fsspec.filesystem("memory")
    root = f"/store-{tmp_path.name}"
    for path in (MODELS_DIR / DEFAULT_MODEL_ID).iterdir():
        fs.pipe(f"{root}/{DEFAULT_MODEL_ID}/{path.name}", path.read_bytes())
    yield ModelStore(f"memory://{root}", cache_dir=tmp_path / "cache"), fs, root
    fs.rm(root, recursive=True)


def test_remote_store_downloads_verifies_and_caches(memory_store, tmp_path):
    store, fs, root = memory_store
    assert is_remote(store.uri) and store.list_ids() == [DEFAULT_MODEL_ID]
    path = store.local_artefact(DEFAULT_MODEL_ID)
    assert path == tmp_path / "cache" / DEFAULT_MODEL_ID / "model.pt"
    assert path.read_bytes() == (MODELS_DIR / DEFAULT_MODEL_ID / "model.pt").read_bytes()
    load_model(path)  # a real, loadable artefact
    fs.rm(f"{root}/{DEFAULT_MODEL_ID}/model.pt")
    assert store.local_artefact(DEFAULT_MODEL_ID) == path  # served from the verified cache


def test_remote_artefact_with_a_wrong_digest_is_refused(memory_store):
    store, fs, root = memory_store
    fs.pipe(f"{root}/{DEFAULT_MODEL_ID}/model.pt", b"not the model")
    with pytest.raises(ValueError, match="does not match its card"):
        store.local_artefact(DEFAULT_MODEL_ID)
    assert not (store.cache_dir / DEFAULT_MODEL_ID / "model.pt").exists()


def test_card_is_read_from_the_store(memory_store):
    store, _, _ = memory_store
    card = store.card(DEFAULT_MODEL_ID)
    assert card == json.loads((MODELS_DIR / DEFAULT_MODEL_ID / "card.json").read_text())


def test_cache_tracker_follows_lru():
    tracker = ModelCacheTracker(capacity=2)
    assert tracker.touch("a").hit is False
    assert tracker.touch("b").evicted is None
    assert tracker.touch("a").hit is True  # a is now the most recently used
    event = tracker.touch("c")
    assert (event.hit, event.evicted) == (False, "b")
    assert tracker.loaded == ["a", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        ModelCacheTracker(0)
