"""Typed arguments of the application builder, the Serve config's path, the model store's path.

Imports nothing heavy (no torch): the ingress imports this module, and its replicas stay small.

``AppArgs`` is what the ``args:`` block of an application in the Serve config
(``charts/mnist-serve/files/serve-config.yaml``, and the chart's ``serveConfigV2``
rendered from it) is validated against. Per-deployment settings (replicas, resources, user_config)
live in that config's ``deployments:`` list, not here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from serve_app.tasks import TaskSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The model store inside the repository (and inside the image): one directory per model.
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_MODEL_ID = "mnist-cnn"
#: The one Serve config. It lives inside the chart because Helm reads only files inside a
#: chart; ``serve run``/``serve deploy`` and the local run take it as is, the chart renders
#: it into the RayService's serveConfigV2 with per-environment numbers from values.
SERVE_CONFIG_PATH = REPO_ROOT / "charts" / "mnist-serve" / "files" / "serve-config.yaml"
APP_NAME = "mnist"


class AppArgs(BaseModel):
    """Arguments of :func:`serve_app.app.build_app`."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(DEFAULT_MODEL_ID, description="model served when a request names none")
    model_store: str | None = Field(
        None,
        description="model store: a local directory or an fsspec URI (s3://, gs://); default: the baked-in store",
    )
    max_models_per_replica: int = Field(
        2, ge=1, le=64, description="models one Classifier replica keeps loaded (LRU eviction beyond)"
    )
    tasks: TaskSettings = Field(
        default_factory=lambda: TaskSettings(enabled=False),
        description="asynchronous inference (/tasks, the TaskConsumer); off unless the config turns it on",
    )
    max_batch_images: int = Field(256, ge=1, le=4096, description="most images one request may carry (413 above)")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest request body accepted, in bytes (413 above)"
    )


#: Images per model call on the Classifier; measured best on a CPU (``python -m bench.model_batch``).
DEFAULT_MAX_IMAGES_PER_MODEL_CALL = 128


class ClassifierUserConfig(BaseModel):
    """The Classifier's whole ``user_config``: batching, plus a test-only slowdown."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024, description="most requests merged into one model call")
    batch_wait_timeout_s: float = Field(0.0, ge=0, le=1, description="longest wait for a batch to fill, in seconds")
    max_images_per_model_call: int = Field(
        DEFAULT_MAX_IMAGES_PER_MODEL_CALL,
        ge=1,
        le=65_536,
        description="a merged batch of more images runs as several model calls of at most this many images "
        "(CPU caches; bench.model_batch)",
    )
    debug_delay_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="TEST ONLY: ms added to every model call of the slowed replica (router benchmark)",
    )
    debug_slow_rank: int | None = Field(
        None, ge=0, description="TEST ONLY: rank of the replica debug_delay_ms slows; null: every replica"
    )

    def batching(self) -> BatchingConfig:
        """The batching part."""
        return BatchingConfig(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s)


class BatchingConfig(BaseModel):
    """The Classifier's ``user_config``: dynamic batching, changeable live through ``reconfigure()``."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024, description="most requests merged into one model call")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=1,
        description="longest wait for a batch to fill after its first request, in seconds; 0 merges only "
        "what queues while the previous batch runs (no added latency when idle)",
    )
