"""(b) of ``bench.compare``: the tutorial's first app, one Ray Serve deployment with the model inside.

As section 2 of "Introduction to Ray Serve" builds it: ``@serve.deployment()`` with Serve's defaults
(one replica, ``max_ongoing_requests`` 5, one CPU; the section sets none of them), no FastAPI, and an
``async __call__(self, request)`` that reads ``await request.json()`` and runs the model on the
replica's event loop. Preprocessing (validation, ``ToDtype`` + ``Normalize``) happens in the same
replica, with the project's own code (:mod:`bench.baselines`). Serve's proxy hands it every path
under ``/``, so ``POST /predict`` and the tutorial's ``POST /`` both reach it.

    from bench.tutorial_app import serve_config
    local_cluster(serve_config(http_port=8000))     # import path bench.tutorial_app:app
"""

from __future__ import annotations

import json
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.baselines import MODEL_PATH, classify, error_answer, load_served_model
from serve_app.errors import MalformedBodyError, ServeAppError

APP_NAME = "tutorial"
IMPORT_PATH = "bench.tutorial_app:app"


@serve.deployment()
class TutorialClassifier:
    """The model and its preprocessing in one replica; the request is parsed where it lands."""

    def __init__(self, model_path: str) -> None:
        self.model = load_served_model(model_path)

    async def __call__(self, request: Request) -> dict[str, Any] | JSONResponse:
        """``{"image": [...]}`` -> labels and probabilities (the tutorial's ``await request.json()``)."""
        try:
            try:
                payload = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MalformedBodyError(f"malformed JSON: {exc}") from None
            return classify(self.model, payload)
        except ServeAppError as error:
            body, status = error_answer(error)
            return JSONResponse(body, status_code=status)


app = TutorialClassifier.bind(str(MODEL_PATH))


def serve_config(http_port: int, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Serve config with only this app; proxy and logging options copied from ``base`` (the graph's)."""
    base = base or {}
    config: dict[str, Any] = {
        key: value for key, value in base.items() if key in ("proxy_location", "http_options", "logging_config")
    }
    config["http_options"] = {**(base.get("http_options") or {}), "port": http_port}
    config["applications"] = [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH}]
    return config
