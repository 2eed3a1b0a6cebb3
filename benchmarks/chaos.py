"""The chaos run, longer (issue 12 item 6): ``pyweaver multi deploy`` of
``tests/chaos/app.py`` under bounded load while replicas are SIGKILLed and SIGSTOPped
and every reachable socket is flooded with idle connections; prints the figures.

    python benchmarks/chaos.py                 # 120 s, 8 clients
    python benchmarks/chaos.py --duration 300 --clients 16 --flood 600

Exits 1 if a guarantee failed (lost idempotent call, not_retriable call run twice, call
past its deadline, unbounded memory/descriptors, deployment gone). See docs/chaos.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos import harness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--stop-for", type=float, default=3.0)
    parser.add_argument("--flood", type=int, default=200, help="idle connections on the proxy")
    parser.add_argument("--flood-per-socket", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = harness.Settings(
        clients=args.clients,
        duration=args.duration,
        deadline=args.deadline,
        replicas=args.replicas,
        kill_every=args.kill_every,
        stop_for=args.stop_for,
        flood_proxy=args.flood,
        flood_per_socket=args.flood_per_socket,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="pyweaver-chaos-") as directory:
        result = harness.run(Path(directory), settings)
    print(harness.summary(result))
    ok_calls = sum(v for k, v in result.calls.items() if k.endswith(" 200"))
    print(f"throughput: {ok_calls / settings.duration:.0f} ok calls/s")
    failed = (
        result.lost_idempotent
        or result.run_twice
        or result.past_deadline
        or not result.deployment_alive
        or harness.bounded(result)
        or any(math.isnan(t) for t in result.kill_recovery + result.stop_recovery)
    )
    if failed:
        print("FAILED:", *harness.bounded(result), sep="\n  ")
        print(result.log_tail)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
