"""Generate charts/mnist-serve/README.md from values.yaml's ``# --`` comments (the helm-docs convention).

    python -m tools.chart_docs            # rewrite the README
    python -m tools.chart_docs --check    # exit 1 if the README is out of date (a test runs this)

A comment ``# -- text`` documents the key on the next line; following ``#`` lines continue it,
except ``# @upgrade <class>``, which says what ``helm upgrade`` does when the value changes (one of
:data:`UPGRADE_CLASSES`; a chart test checks each against the rendered objects). Every leaf value
(and every map or list that has a ``# --`` comment) becomes a table row with its dotted key, type,
default, upgrade class and description. The README's prose comes from README.md.tmpl,
where ``{{ values_table }}`` marks the table's place.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent.parent / "charts" / "mnist-serve"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-\"/]+):(?P<rest>.*)$")
DOC_START = re.compile(r"^ *# -- ?(?P<text>.*)$")
DOC_CONTINUE = re.compile(r"^ *# ?(?P<text>.*)$")
UPGRADE = re.compile(r"^@upgrade (?P<upgrade>[a-z-]+)$")
#: The classes of values.yaml's header, in the order the README explains them.
UPGRADE_CLASSES = ("in-place", "new-cluster", "not-propagated", "rayservice", "chart-objects", "rename")


@dataclass(frozen=True)
class ValueDoc:
    """One documented value."""

    key: str
    type: str
    default: Any
    description: str
    upgrade: str


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _lookup(values: dict[str, Any], path: list[str]) -> Any:
    node: Any = values
    for part in path:
        node = node[part]
    return node


def parse_values(text: str) -> list[ValueDoc]:
    """Documented values of a values.yaml, in file order; undocumented leaves are an error."""
    values = yaml.safe_load(text)
    docs: list[ValueDoc] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    upgrade: str | None = None
    undocumented: list[str] = []
    unclassified: list[str] = []
    list_indent: int | None = None  # inside a list, or a map documented as a whole
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if list_indent is not None:
            if indent > list_indent or (indent == list_indent and stripped.startswith("-")):
                continue
            list_indent = None
        if (match := DOC_START.match(line)) is not None:
            pending, upgrade = [match.group("text").strip()], None
            continue
        if stripped.startswith("#"):
            if pending is not None and (cont := DOC_CONTINUE.match(line)):
                text = cont.group("text").strip()
                if (tag := UPGRADE.match(text)) is not None:
                    upgrade = tag.group("upgrade")
                else:
                    pending.append(text)
            continue
        match = KEY_LINE.match(line)
        if match is None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match.group("key").strip('"')
        path = [k for _, k in stack] + [key]
        value = _lookup(values, path)
        block = not match.group("rest").strip()
        if pending is not None:
            if upgrade not in UPGRADE_CLASSES:
                unclassified.append(".".join(path))
            docs.append(ValueDoc(".".join(path), _type_name(value), value, " ".join(pending), upgrade or ""))
        elif not (isinstance(value, dict) and value and block):
            undocumented.append(".".join(path))
        documented = pending is not None
        pending = None
        if block and (isinstance(value, list) or documented):
            list_indent = indent  # a list, or a map documented as a whole: skip its lines
        elif block and isinstance(value, dict):
            stack.append((indent, key))
    if undocumented:
        raise ValueError(f"values without a '# --' description: {undocumented}")
    if unclassified:
        raise ValueError(f"values without '# @upgrade' and one of {UPGRADE_CLASSES}: {unclassified}")
    return docs


def _escape(text: str) -> str:
    """Escape a table cell's pipes."""
    return text.replace("|", "\\|")


def _default_cell(value: Any) -> str:
    return _escape(f"`{json.dumps(value, separators=(', ', ': '))}`")


def values_table(docs: list[ValueDoc]) -> str:
    """The Markdown table of every documented value."""
    rows = [
        "| Key | Type | Default | On upgrade | Description |",
        "|-----|------|---------|------------|-------------|",
    ]
    rows += [
        f"| `{d.key}` | {d.type} | {_default_cell(d.default)} | {d.upgrade} | {_escape(d.description)} |" for d in docs
    ]
    return "\n".join(rows)


def render_readme(chart_dir: Path = CHART_DIR) -> str:
    """The README text for the chart."""
    template = (chart_dir / "README.md.tmpl").read_text()
    table = values_table(parse_values((chart_dir / "values.yaml").read_text()))
    return template.replace("{{ values_table }}", table)


def main(argv: list[str] | None = None) -> None:
    """Write the README, or with --check fail when it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is not up to date")
    args = parser.parse_args(argv)
    readme = CHART_DIR / "README.md"
    wanted = render_readme()
    if args.check:
        if not readme.exists() or readme.read_text() != wanted:
            sys.exit("charts/mnist-serve/README.md is out of date: run python -m tools.chart_docs")
        return
    readme.write_text(wanted)
    print(f"wrote {readme}")


if __name__ == "__main__":
    main()
