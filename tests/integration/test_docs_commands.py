"""Every command the docs show is run, as copied, against the live app, and its shown output checked.

The README and docs/*.md mark each ``bash`` and ``python`` block on the line before it:
``<!-- doc-test: run -->`` (run here) or ``<!-- doc-test: skip: <reason> -->`` (needs what CI has
not: a cluster, Docker, root, minutes of load). An unmarked block fails the test, so a new block
cannot escape. A run block executes from the repository root with the project's interpreter, with
``localhost:8000`` and ``localhost:9000`` pointing at the test app's HTTP and gRPC ports; a
comment line right after a command (``# {"predicted_label":[7], ...}``) is that command's shown
output, matched against what it printed, with ``...`` standing for anything and a decimal number
for any decimal number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from serve_app.config import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]
MARKER = re.compile(r"^<!-- doc-test: (run|skip: (?P<reason>.+)) -->$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
COMMAND_LANGUAGES = {"bash", "sh", "python"}
_NUMBER = r"-?[0-9][0-9.]*(?:e[-+]?[0-9]+)?"


@dataclass(frozen=True)
class Block:
    """A fenced code block of a doc."""

    path: Path
    line: int
    language: str
    code: str
    marker: str | None  # "run", "skip: <reason>", or None

    @property
    def name(self) -> str:
        """``README.md:68`` (the line of its opening fence)."""
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marker on the line before it."""
    lines = path.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next(j for j in range(index + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(lines[index - 1]) if index else None
        found.append(
            Block(path, index + 1, fence["lang"], "\n".join(lines[index + 1 : end]), marker[1] if marker else None)
        )
        index = end + 1
    return found


ALL_BLOCKS = [block for path in DOCS for block in blocks_of(path)]
COMMANDS = [block for block in ALL_BLOCKS if block.language in COMMAND_LANGUAGES]
RUN = [block for block in COMMANDS if block.marker == "run"]


def expected_pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a pattern: spaces ignored, ``...``/``…`` any text, decimals any decimal."""
    text = re.sub(r"\s+", "", shown)
    parts = re.split(r"(\.\.\.|…|-?[0-9]+\.[0-9]+(?:e[-+]?[0-9]+)?|-?[0-9]+e[-+]?[0-9]+)", text)
    pattern = ""
    for part in parts:
        if part in ("...", "…"):
            pattern += ".*?"
        elif re.fullmatch(r"-?[0-9]+\.[0-9]+(?:e[-+]?[0-9]+)?|-?[0-9]+e[-+]?[0-9]+", part):
            pattern += _NUMBER
        else:
            pattern += re.escape(part)
    return re.compile(pattern)


def shown_outputs(code: str, language: str = "bash") -> list[str]:
    """A block's shown output: in bash, the comment lines that follow a command line; in Python,
    the comment after a ``print(...)`` (unless it says "e.g.": an example, not the answer).
    """
    if language == "python":
        printed = (line.partition(")  # ")[2] for line in code.splitlines() if line.lstrip().startswith("print("))
        return [text for text in printed if text and not text.startswith("e.g.")]
    shown, after_command = [], False
    for line in code.splitlines():
        stripped = line.strip()
        if stripped.startswith("# ") and after_command:
            shown.append(stripped[2:])
        else:
            after_command = bool(stripped) and not stripped.startswith("#")
    return shown


def test_every_command_block_is_marked_run_or_skip_with_a_reason():
    unmarked = [block.name for block in COMMANDS if block.marker is None]
    assert unmarked == [], f"mark these blocks <!-- doc-test: run --> or <!-- doc-test: skip: <reason> -->: {unmarked}"
    assert all(len(block.marker) > len("skip: ") + 10 for block in COMMANDS if block.marker != "run")
    assert len(RUN) >= 7


def test_the_output_patterns_match_what_they_should():
    pattern = expected_pattern('{"predicted_label":[7],"probabilities":[[2.9e-10, ..., 0.99999, ...]],"model_id":"x"}')
    assert pattern.search('{"predicted_label":[7],"probabilities":[[2.85e-10,4.9e-08,0.9999879,1e-05]],"model_id":"x"}')
    assert not pattern.search('{"predicted_label":[1],"probabilities":[[0.5]],"model_id":"x"}')
    assert shown_outputs("curl a\n# {1}\n\ncurl b\n# {2}\n# {3}\n# a comment before nothing\necho") == [
        "{1}",
        "{2}",
        "{3}",
        "a comment before nothing",
    ]
    python = "x = 1  # not shown\nprint(x)  # 1\nprint(y)  # e.g. 2\nprint(\n    z\n)  # 3"
    assert shown_outputs(python, "python") == ["1"]


@pytest.mark.parametrize("block", RUN, ids=[block.name for block in RUN])
def test_a_docs_block_runs_as_copied_and_prints_what_it_shows(local_serve, block):
    port = local_serve.base_url.rsplit(":", 1)[1]
    grpc_port = local_serve.grpc_target.rsplit(":", 1)[1]
    code = block.code.replace("localhost:8000", f"localhost:{port}").replace("localhost:9000", f"localhost:{grpc_port}")
    env = {**os.environ, "MNIST_SERVE_GRPC_TARGET": f"localhost:{grpc_port}"}
    interpreter = [sys.executable, "-c"] if block.language == "python" else ["bash", "-euo", "pipefail", "-c"]
    command = [*interpreter, code]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    printed = re.sub(r"\s+", "", result.stdout)
    position = 0
    for shown in shown_outputs(block.code, block.language):
        match = expected_pattern(shown).search(printed, position)
        assert match, f"{block.name}: shown output {shown!r} not in what it printed:\n{result.stdout[-3000:]}"
        position = match.end()
