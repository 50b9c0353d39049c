"""Import hygiene that keeps replicas small and pure logic free of Ray."""

import subprocess
import sys

import pytest

from serve_app.config import REPO_ROOT


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_ingress_does_not_import_torch():
    # torch (CUDA build) adds hundreds of MiB to a process; the ingress only parses and validates.
    loaded = modules_after_import("serve_app.ingress")
    assert "torch" not in loaded
    assert "torchvision" not in loaded


@pytest.mark.parametrize(
    "module",
    [
        "serve_app.inputs",
        "serve_app.model",
        "serve_app.transforms",
        "serve_app.training.data",
        "serve_app.config",
        "serve_app.store",
        "serve_app.batching",
        "serve_app.tasks",
        "serve_app.policies",
        "serve_app.latency",
        "serve_app.grpc_api",
        "serve_app.grpc_client",
    ],
)
def test_pure_logic_does_not_import_ray_serve(module):
    assert "ray.serve" not in modules_after_import(module)
