"""``python -m tools.kube_local up|down|status``: the local cluster (see :mod:`tools.kube_local.cluster`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.kube_local.cluster import DEFAULT_STATE, LocalCluster


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and act on the cluster."""
    parser = argparse.ArgumentParser(prog="kube-local", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    parser.add_argument("--keep-state", action="store_true", help="down: keep etcd's data and the PKI")
    args = parser.parse_args(argv)
    cluster = LocalCluster(state=args.state)
    if args.action == "up":
        seconds = cluster.up()
        print(f"# the cluster is up ({seconds:.1f} s); logs in {cluster.logs}", file=sys.stderr)
        print(cluster.next_steps())
    elif args.action == "down":
        cluster.down(keep_state=args.keep_state)
        print("# stopped" + ("" if args.keep_state else f"; {args.state} removed"), file=sys.stderr)
    else:
        print(json.dumps(cluster.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
