"""(d) of ``bench.compare``: KServe's Python model server serving the same model over the Open Inference Protocol.

Runs in its own virtual environment (KServe pins protobuf below 7, the project needs 7), made by
:func:`kserve_python`; the project's packages (torch, ``serve_app``) come from the project's
environment, placed after KServe's own on ``sys.path``. The model is the artefact the graph serves
(``models/mnist-cnn/model.pt``) and a request is validated and normalised with the project's own
code (:mod:`serve_app.inputs`, :mod:`serve_app.transforms`), so the two servers differ only in how
a request reaches the model: one KServe ``ModelServer`` process, one uvicorn worker, ``predict``
on its event loop (KServe's way for a synchronous model), REST and gRPC.

    python -m bench.kserve_app --setup        # make the environment (.venv-kserve), once
    .venv-kserve/bin/python -m bench.kserve_app --http_port 8085 --grpc_port 8086

:func:`kserve_server` starts it in a subprocess for the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serve_app.config import DEFAULT_MODEL_ID, REPO_ROOT

#: KServe's version for the benchmark (its own environment; protobuf 6).
KSERVE_REQUIREMENT = "kserve==0.21.0"
KSERVE_VENV = REPO_ROOT / ".venv-kserve"
#: The file that puts the project's environment after KServe's own packages.
PROJECT_PATH_FILE = "mnist_serve_project.pth"


def kserve_python(venv: Path = KSERVE_VENV) -> Path:
    """The interpreter of KServe's environment, made (once) if it is missing."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", KSERVE_REQUIREMENT], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Appended after KServe's site-packages: KServe's own pins win, torch and serve_app come from here.
    project = [str(REPO_ROOT), sysconfig.get_paths()["purelib"]]
    (Path(site) / PROJECT_PATH_FILE).write_text("\n".join(project) + "\n")
    return python


def serve(argv: list[str]) -> None:  # pragma: no cover - runs in KServe's environment
    """Start KServe's model server with the model (KServe's command line: --http_port, --grpc_port, ...)."""
    import kserve
    import numpy as np
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    from bench.baselines import MAX_IMAGES, load_served_model
    from serve_app.inputs import decode_images
    from serve_app.model import predict
    from serve_app.transforms import to_model_input

    scales = {"FP32": "unit", "UINT8": "uint8"}

    class MnistModel(kserve.Model):
        """The served TorchScript model; input ``image`` (FP32 or UINT8), outputs ``probabilities`` and ``label``."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.model = load_served_model()
            self.ready = True

        def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
            tensor = payload.inputs[0]
            pixels = decode_images(tensor.as_numpy(), scales[tensor.datatype], MAX_IMAGES)
            result = predict(self.model, to_model_input(pixels))
            probabilities = InferOutput("probabilities", list(result.probabilities.shape), "FP32")
            probabilities.set_data_from_numpy(result.probabilities.astype(np.float32), binary_data=False)
            labels = InferOutput("label", [len(result.labels)], "INT64")
            labels.set_data_from_numpy(result.labels.astype(np.int64), binary_data=False)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[probabilities, labels],
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )

    sys.argv = [sys.argv[0], *argv]
    args, _ = kserve.model_server.parser.parse_known_args()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start(
        [MnistModel(DEFAULT_MODEL_ID)]
    )


@contextmanager
def kserve_server(http_port: int, grpc_port: int, timeout_s: float = 120) -> Iterator[tuple[str, str]]:
    """KServe's model server in a subprocess; yields its base URL and gRPC target; stops it afterwards."""
    from serve_app.local.processes import stop_process, wait_until_answering

    command = [str(kserve_python()), "-m", "bench.kserve_app", "--http_port", str(http_port)]
    command += ["--grpc_port", str(grpc_port), "--configure_logging", "false"]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment)
    url = f"http://127.0.0.1:{http_port}"
    try:
        ready = f"{url}/v2/models/{DEFAULT_MODEL_ID}/ready"
        wait_until_answering(process, ready, "KServe's model server", timeout_s, poll_s=0.5)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(process)


def main() -> None:
    """``--setup`` makes KServe's environment; anything else starts the server there."""
    if sys.argv[1:] == ["--setup"]:
        print(f"KServe's environment: {kserve_python()}")
        return
    serve(sys.argv[1:])


if __name__ == "__main__":
    main()
