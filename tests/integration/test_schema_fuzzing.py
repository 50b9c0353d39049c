"""Schemathesis against the live app: the OpenAPI schema says what the service does, and nothing breaks it.

Every check (``--checks all``: no server error, status codes, content types, headers and bodies as
the schema declares them, schema-violating data refused, schema-valid data accepted, undeclared
methods refused, stateful links), in all four phases (examples, coverage, fuzzing, stateful),
with a fixed seed, at least 1,000 generated cases a run. The configuration and its hooks are in
tests/integration/fuzz/ (real images where the schema can only say "binary"; failures judged on
the request as sent). Afterwards the service still classifies a real digit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from serve_app.config import REPO_ROOT

FUZZ_DIR = Path(__file__).parent / "fuzz"
SEED = 20261205
#: Cases per operation and phase; with the seed above this generates about 1,100 cases.
MAX_EXAMPLES = 40
MIN_CASES = 1000


def test_the_live_api_meets_its_schema_under_generated_requests(local_serve, tmp_path):
    report = tmp_path / "schemathesis.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(FUZZ_DIR / "schemathesis.toml"),
        "--no-color",
        "run", f"{local_serve.base_url}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--request-timeout", "60",
        "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    summary = json.loads(report.read_text()) if report.exists() else {}
    print(result.stdout[-3000:])  # the phases and the figures, in the test's log
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    cases = summary["test_cases"]
    assert cases["generated"] >= MIN_CASES, cases
    assert cases["with_failures"] == 0 and cases["errored"] == 0 and summary["failures"] == [], summary["failures"]
    assert all(phase["status"] == "success" for phase in summary["phases"].values()), summary["phases"]
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 17


def test_the_service_still_classifies_a_real_digit_after_the_fuzzing(local_serve, example_digits):
    images, labels = example_digits
    response = local_serve.post("/predict", json={"image": images.tolist()})
    assert response.status_code == 200 and response.json()["predicted_label"] == labels.tolist()
