"""Run the chart's rendered RayService as a multi-node Ray cluster on this machine, and report.

    python -m tools.multinode                         # default, cpu-only and ha; faults in ha
    python -m tools.multinode --scenario ha --faults  # one scenario, killing pods under load
    python -m tools.multinode --json report.json      # also write the figures as JSON
    python -m tools.multinode --cleanup               # remove namespaces left by a killed run

Needs root (network, PID and mount namespaces). bash scripts/multinode installs what it needs
and runs this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.chart import SCENARIOS, objects_of, render_chart, scenario_values
from tools.multinode.network import remove_leftovers, unavailable_reason
from tools.multinode.report import format_report, run_scenario

DEFAULT_SCENARIOS = ("default", "cpu-only", "ha")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; the exit code is 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="a ci/ scenario (repeatable)")
    parser.add_argument("--faults", action="store_true", help="kill a CPU worker, a GPU worker and the head under load")
    parser.add_argument("--json", type=Path, help="write the reports here as JSON")
    parser.add_argument("--logs", type=Path, help="keep every pod's output in this directory")
    parser.add_argument("--cleanup", action="store_true", help="remove what killed runs left, then exit")
    args = parser.parse_args(argv)
    if (reason := unavailable_reason()) is not None:
        print(f"cannot run pods here: {reason}", file=sys.stderr)
        return 2
    if args.cleanup:
        print("\n".join(remove_leftovers()) or "nothing to remove")
        return 0
    scenarios = args.scenario or list(DEFAULT_SCENARIOS)
    reports, failed = [], False
    for scenario in scenarios:
        faults = args.faults or (args.scenario is None and scenario == "ha")
        objects = objects_of(render_chart(scenario_values(scenario)))
        report = run_scenario(scenario, objects, faults=faults, keep_logs=args.logs and args.logs / scenario)
        print(format_report(report), flush=True)
        failed |= not all(report.http_classified.values()) or report.grpc_classified is False
        failed |= any(fault.success_ratio < 0.999 for fault in report.faults)
        reports.append(report.as_dict())
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
