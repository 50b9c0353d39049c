"""(c) of ``bench.compare``: the same model and request contract in a plain FastAPI app, no Ray.

    python -m uvicorn --factory bench.fastapi_app:create_app --port 8001 --workers 1

One process, one worker: the request is parsed, validated, normalised and classified on uvicorn's
event loop, with the project's own code (:mod:`bench.baselines`). ``POST /predict`` (and ``POST /``,
the tutorial's path) answer exactly as the graph does, to JSON and to ``.npy`` bodies.
:func:`fastapi_server` runs it in a subprocess for the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.baselines import classify, classify_npy, error_answer, load_served_model
from serve_app.config import REPO_ROOT
from serve_app.errors import MalformedBodyError, ServeAppError
from serve_app.inputs import NPY_MEDIA_TYPE, media_type
from serve_app.local.processes import stop_process, wait_until_answering

FACTORY = "bench.fastapi_app:create_app"


def create_app() -> FastAPI:
    """The app, with the model loaded once."""
    model = load_served_model()
    api = FastAPI(title="mnist-serve reference: plain FastAPI")

    @api.post("/predict")
    @api.post("/")
    async def predict(request: Request) -> Any:
        """``{"image": [...]}`` (or a ``.npy`` body) -> labels and probabilities."""
        try:
            if media_type(request.headers.get("content-type")) == NPY_MEDIA_TYPE:
                return classify_npy(model, await request.body())
            try:
                payload = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MalformedBodyError(f"malformed JSON: {exc}") from None
            return classify(model, payload)
        except ServeAppError as error:
            body, status = error_answer(error)
            return JSONResponse(body, status_code=status)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return api


def uvicorn_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line of one uvicorn worker serving :func:`create_app`."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        FACTORY,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


@contextmanager
def fastapi_server(port: int, timeout_s: float = 60) -> Iterator[str]:
    """Run the app under uvicorn in a subprocess; yield its base URL; stop it afterwards."""
    process = subprocess.Popen(uvicorn_command(port), cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, url + "/healthz", "uvicorn", timeout_s)
        yield url
    finally:
        stop_process(process)
