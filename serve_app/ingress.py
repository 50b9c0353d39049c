"""Ingress deployment: the serving graph behind the HTTP routes, the gRPC API and the DeploymentHandle API.

HTTP (port 8000): the routes of :class:`serve_app.http_api.HttpRoutes`, which this deployment
subclasses (``/predict``, ``/``, ``/predict/image``, ``/tasks``, ``/models``, ``/healthz``, the
Open Inference Protocol under ``/v2``, ``/docs``).

gRPC (``serve_app/proto/mnist.proto``, port 9000): ``mnist_serve.v1.Mnist/Predict`` and
``/ListModels``, the same contract as ``/predict`` and ``/models``; and
``inference.GRPCInferenceService`` (``serve_app/proto/inference.proto``), as the ``/v2`` routes.

Handle: ``handle.predict.remote({"image": ndarray})`` returns the same dict.

A request chooses its model with the ``serve_multiplexed_model_id`` header (HTTP), the
``multiplexed_model_id`` metadata key (gRPC) or ``handle.options(multiplexed_model_id=...)``;
without one it gets the default model, and an unknown id is a 404 (NOT_FOUND) that lists the
known ones.

Every input is validated in the Ingress, before any other deployment sees it, and every
failure is mapped to a status by :mod:`serve_app.errors`.
"""

import asyncio
import contextvars
import logging
import time
from http import HTTPStatus
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from google.protobuf.message import Message
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from serve_app import oip
from serve_app.batching import (
    ModelRequest,
    apply_batching,
    call_in_first_live_context,
    group_by_model,
    merge,
    split_answer,
)
from serve_app.config import AppArgs, BatchingConfig
from serve_app.errors import PayloadTooLargeError, ServeAppError, ServiceBusyError, ServiceUnavailableError
from serve_app.grpc_api import models_response, predict_response, request_pixels
from serve_app.http_api import (
    GRPC_LIST_MODELS_ROUTE,
    GRPC_OIP_INFER_ROUTE,
    GRPC_OIP_OTHER_ROUTE,
    GRPC_PREDICT_ROUTE,
    HttpRoutes,
    api,
    configure,
    record_request,
)
from serve_app.inputs import decode_payload
from serve_app.metrics import ingress_metrics
from serve_app.proto import inference_pb2, mnist_pb2
from serve_app.store import ModelStore
from serve_app.task_client import TaskClient

logger = logging.getLogger("ray.serve")

GrpcMessage = TypeVar("GrpcMessage", bound=Message)


def map_downstream_error(exc: Exception) -> ServeAppError:
    """Translate a failure of a downstream deployment call into a client-facing error."""
    if isinstance(exc, ServeAppError):
        return exc
    if isinstance(exc, BackPressureError):
        return ServiceBusyError("the classifier is saturated; retry after the Retry-After delay")
    if isinstance(exc, (DeploymentUnavailableError, RayActorError)):
        return ServiceUnavailableError(f"a model replica is unavailable ({type(exc).__name__}); retry shortly")
    logger.exception("unexpected error in the serving graph")
    return ServeAppError(f"internal error in the serving graph: {type(exc).__name__}")


MODEL_HEADER = "serve_multiplexed_model_id"


# Module-level helpers the Ingress's methods call are defined above the class: @serve.deployment
# captures the class (and what its methods refer to) when the module reaches it.
def _grpc_error(
    grpc_context: RayServegRPCContext, error: ServeAppError | oip.OipError, empty: GrpcMessage
) -> GrpcMessage:
    """Answer a gRPC call with ``error``'s status code and message (and an empty message, as gRPC wants).

    Both error kinds, the service's own and the Open Inference Protocol's, carry their gRPC code.
    """
    grpc_context.set_code(error.grpc_code)
    grpc_context.set_details(error.message)
    return empty


#: The Ingress's default batching (its user_config): merge what is queued, never wait.
INGRESS_BATCHING = BatchingConfig(max_batch_size=16, batch_wait_timeout_s=0.0)
#: Merged calls one Ingress replica keeps in flight. They are all the Classifier's autoscaler
#: sees (its ongoing requests count merged calls): at a target of 2 per replica, one Ingress
#: replica can keep at most 8 / 2 = 4 Classifier replicas busy. Serve requires
#: max_ongoing_requests >= max_batch_size * this (16 * 8 = 128 <= 200).
INGRESS_CONCURRENT_BATCHES = 8


# Invariant: max_ongoing_requests >= max_batch_size, or a batch can never fill.
@serve.deployment(ray_actor_options={"num_cpus": 0.25}, user_config=INGRESS_BATCHING.model_dump())
@serve.ingress(api)
class Ingress(HttpRoutes):
    """Drives Preprocessor -> Classifier for the HTTP routes (inherited), gRPC and handles."""

    def __init__(
        self,
        preprocessor: DeploymentHandle,
        classifier: DeploymentHandle,
        args: AppArgs,
        consumer: DeploymentHandle | None = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.classifier = classifier
        self.args = args
        # The consumer takes its work from Redis, not from this replica; binding it here only
        # makes it part of the application.
        self.consumer = consumer
        self.tasks = TaskClient(args.tasks) if args.tasks.enabled else None
        self.store = ModelStore(args.model_store)
        self.batching = INGRESS_BATCHING
        self.metrics = ingress_metrics()
        self._classifier_by_model: dict[str, DeploymentHandle] = {}
        configure(args.max_body_bytes, args.max_batch_images)  # this replica's body limit and schema
        self.store.check_id(args.model_id)  # a wrong default fails the deploy, not the first request

    def _resolve_model(self, request: Request | None = None) -> str:
        """The request's model id (header or handle option), else the default; 404 when unknown."""
        requested = serve.get_multiplexed_model_id()
        if request is not None:
            request.state.model_id = "unknown"
        model_id = self.store.check_id(requested) if requested else self.args.model_id
        if request is not None:
            request.state.model_id = model_id
        return model_id

    def _classifier_for(self, model_id: str) -> DeploymentHandle:
        """A Classifier handle that routes to replicas already holding ``model_id``."""
        handle = self._classifier_by_model.get(model_id)
        if handle is None:
            handle = self.classifier.options(multiplexed_model_id=model_id)
            self._classifier_by_model[model_id] = handle
        return handle

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the Ingress's batching ``user_config`` live (no replica restart)."""
        self.batching = BatchingConfig.model_validate(user_config)
        apply_batching(self._classify_batch, self.batching)

    async def _classify(self, pixels: np.ndarray, model_id: str) -> dict[str, Any]:
        """Validated (N, 1, 28, 28) pixels -> the answer, batched with concurrent requests."""
        return await self._classify_batch(ModelRequest(model_id, pixels, contextvars.copy_context()))

    # Batching here, before the DeploymentHandle hops, is what makes the composed graph cheap:
    # N concurrent requests cost one Preprocessor call and one Classifier call per model, not N
    # of each. A zero wait adds no latency when idle; under load the requests that arrive while
    # a batch is in flight form the next one. Two batches in flight keep both hops busy.
    @serve.batch(
        max_batch_size=INGRESS_BATCHING.max_batch_size,
        batch_wait_timeout_s=INGRESS_BATCHING.batch_wait_timeout_s,
        max_concurrent_batches=INGRESS_CONCURRENT_BATCHES,
    )
    async def _classify_batch(self, requests: list[ModelRequest]) -> list[dict[str, Any]]:
        """One graph call per (model, pixel type) among the merged requests; answers in order."""
        answers: list[dict[str, Any]] = [{} for _ in requests]
        for (model_id, _), indices in group_by_model(requests).items():
            images, sizes = merge(requests, indices)
            self.metrics.batch_size.observe(len(indices), tags={"model": model_id})
            merged = await self._merged_call(requests, indices, images, model_id)
            for index, answer in zip(indices, split_answer(merged, sizes), strict=True):
                answers[index] = answer
        return answers

    async def _merged_call(
        self, requests: list[ModelRequest], indices: list[int], images: np.ndarray, model_id: str
    ) -> dict[str, Any]:
        """The graph call of one merged group, made in the context of one of its requests.

        The batch runs in its own task; the call is made in a request's context so that it
        carries that request's id and trace. Serve cancels the calls made in a request's context
        when the request is cancelled (its client went away): the other requests of the group
        must not pay for that (a CancelledError out of a batch leaves Serve's batch futures
        unresolved, i.e. their clients hang), so the call is made again in the next request's
        context. Only a cancellation of the batch task itself (shutdown) propagates
        (:func:`serve_app.batching.call_in_first_live_context`).
        """

        def log_retry(attempt: int) -> None:
            logger.info(
                "merged call for %d requests cancelled with request %d (its client left); retrying",
                len(indices),
                attempt + 1,
            )

        return await call_in_first_live_context(
            [requests[index].context for index in indices],
            lambda: self._call_graph(images, model_id),
            cancellations=(asyncio.CancelledError, RequestCancelledError),
            on_cancelled=log_retry,
        )

    async def _call_graph(self, pixels: np.ndarray, model_id: str) -> dict[str, Any]:
        """Pixels -> Preprocessor -> Classifier (one call each), failures mapped to statuses.

        A cancellation is not a failure of the graph: it propagates as is (see :meth:`_merged_call`).
        """
        try:
            # Passing the Preprocessor's response straight on lets Serve hand the tensor
            # to the Classifier without a round trip through this replica.
            normalised = self.preprocessor.run.remote(pixels)
            return await self._classifier_for(model_id).predict.remote(normalised, model_id)
        except RequestCancelledError:
            raise
        except Exception as exc:
            raise map_downstream_error(exc) from exc

    def _task_client(self) -> TaskClient:
        """The asynchronous inference client; 503 when this deployment has none."""
        if self.tasks is None:
            raise ServiceUnavailableError(
                "asynchronous inference is not enabled in this deployment (app arg tasks.enabled; "
                "the Helm chart's asyncInference.enabled)"
            )
        return self.tasks

    def _models_listing(self) -> dict[str, Any]:
        """The store's models with their cards' facts, the default and the header that chooses one."""
        models = []
        for model_id in self.store.list_ids():
            card = self.store.card(model_id)
            models.append(
                {
                    "model_id": model_id,
                    "default": model_id == self.args.model_id,
                    "test_accuracy": card["test_accuracy"],
                    "parameters": card["parameters"],
                    "pixel_transform": card.get("pixel_transform", "none"),
                }
            )
        return {"default_model_id": self.args.model_id, "header": MODEL_HEADER, "models": models}

    def _oip_model(self, model_name: str, model_version: str | None = None, request: Request | None = None) -> str:
        """The store's model of that name (and the one version), else the protocol's 404."""
        oip.check_version(model_version)
        try:
            model_id = self.store.check_id(model_name)
        except ServeAppError as error:
            raise oip.OipError(error.message, 404) from None
        if request is not None:
            request.state.model_id = model_id
        return model_id

    def _ready(self) -> bool:
        """Whether the default model is in the store (OIP server readiness, HTTP and gRPC)."""
        return self.args.model_id in self.store.list_ids()

    # gRPC: inference.GRPCInferenceService (serve_app/proto/inference.proto), the same contract.

    async def ServerLive(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ServerLiveRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ServerLiveResponse:
        """The RPC ``ServerLive``."""
        return inference_pb2.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ServerReadyRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ServerReadyResponse:
        """The RPC ``ServerReady``: as ``GET /v2/health/ready``."""
        return inference_pb2.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ServerMetadataRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ServerMetadataResponse:
        """The RPC ``ServerMetadata``: as ``GET /v2``."""
        return oip.grpc_server_metadata()

    async def ModelReady(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ModelReadyRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ModelReadyResponse:
        """The RPC ``ModelReady``: NOT_FOUND for an unknown model or version."""
        try:
            self._oip_model(request.name, request.version)
        except oip.OipError as error:
            return _grpc_error(grpc_context, error, inference_pb2.ModelReadyResponse())
        return inference_pb2.ModelReadyResponse(ready=True)

    async def ModelMetadata(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ModelMetadataRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ModelMetadataResponse:
        """The RPC ``ModelMetadata``: as ``GET /v2/models/{model}``."""
        started = time.perf_counter()
        try:
            return oip.grpc_model_metadata(self._oip_model(request.name, request.version))
        except oip.OipError as error:
            return _grpc_error(grpc_context, error, inference_pb2.ModelMetadataResponse())
        finally:
            record_request(GRPC_OIP_OTHER_ROUTE, started, HTTPStatus.OK, None)

    async def ModelConfig(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ModelConfigRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ModelConfigResponse:
        """The RPC ``ModelConfig`` (Triton's extension): as ``GET /v2/models/{model}/config``."""
        try:
            model_id = self._oip_model(request.name, request.version)
        except oip.OipError as error:
            return _grpc_error(grpc_context, error, inference_pb2.ModelConfigResponse())
        return oip.grpc_model_config(model_id, self.args.max_batch_images)

    async def ModelInfer(  # noqa: N802 (the RPC's name)
        self, request: inference_pb2.ModelInferRequest, grpc_context: RayServegRPCContext
    ) -> inference_pb2.ModelInferResponse:
        """The RPC ``ModelInfer``: validated, batched and answered as ``POST /v2/models/{model}/infer``."""
        started = time.perf_counter()
        model_id, outcome = "unknown", HTTPStatus.INTERNAL_SERVER_ERROR
        try:
            model_id = self._oip_model(request.model_name, request.model_version)
            size = request.ByteSize()
            if size > self.args.max_body_bytes:
                raise oip.OipError(f"message of {size} bytes exceeds the limit of {self.args.max_body_bytes}", 413)
            parsed = oip.parse_grpc_request(request, self.args.max_batch_images)
            answer = await self._classify(parsed.pixels, model_id)
            outcome = HTTPStatus.OK
            return oip.encode_grpc_response(model_id, parsed, answer["probabilities"], answer["predicted_label"])
        except oip.OipError as error:
            outcome = HTTPStatus(error.status)
            return _grpc_error(grpc_context, error, inference_pb2.ModelInferResponse())
        except ServeAppError as error:  # the graph is busy or a replica unavailable: its own code
            outcome = error.status
            return _grpc_error(grpc_context, error, inference_pb2.ModelInferResponse())
        finally:
            record_request(GRPC_OIP_INFER_ROUTE, started, outcome, model_id)

    async def predict(self, batch: dict[str, Any]) -> dict[str, Any]:
        """DeploymentHandle API: ``{"image": ndarray | nested lists}`` -> the same dict as ``/predict``.

        Choose a model with ``handle.options(multiplexed_model_id=...).predict.remote(...)``.
        """
        model_id = self._resolve_model()
        return await self._classify(decode_payload(batch, self.args.max_batch_images), model_id)

    # The gRPC API (serve_app/proto/mnist.proto). Serve's gRPC ingress calls the Ingress method named
    # like the RPC, with the request message and, as ``grpc_context``, the call's context.
    async def Predict(  # noqa: N802 (the RPC's name)
        self, request: mnist_pb2.PredictRequest, grpc_context: RayServegRPCContext
    ) -> mnist_pb2.PredictResponse:
        """The RPC ``Predict``: validated, batched and answered exactly as ``POST /predict``."""
        started = time.perf_counter()
        model_id, outcome = "unknown", HTTPStatus.INTERNAL_SERVER_ERROR
        try:
            model_id = self._resolve_model()
            size = request.ByteSize()
            if size > self.args.max_body_bytes:
                raise PayloadTooLargeError(f"message of {size} bytes exceeds the limit of {self.args.max_body_bytes}")
            answer = await self._classify(request_pixels(request, self.args.max_batch_images), model_id)
            outcome = HTTPStatus.OK
            return predict_response(answer)
        except ServeAppError as exc:
            outcome = exc.status
            return _grpc_error(grpc_context, exc, mnist_pb2.PredictResponse())
        finally:
            record_request(GRPC_PREDICT_ROUTE, started, outcome, model_id)

    async def ListModels(  # noqa: N802 (the RPC's name)
        self, request: mnist_pb2.ListModelsRequest, grpc_context: RayServegRPCContext
    ) -> mnist_pb2.ListModelsResponse:
        """The RPC ``ListModels``: the listing of ``GET /models``."""
        started = time.perf_counter()
        try:
            return models_response(self._models_listing())
        finally:
            record_request(GRPC_LIST_MODELS_ROUTE, started, HTTPStatus.OK, None)
