"""A component call between two machines on Ray, beside the same call in ``multi``.

Run as root from the repository root (network namespaces need it), with the dev venv:

    .venv/bin/python benchmarks/ray_latency.py                # 3 rounds of 2,000 calls
    .venv/bin/python benchmarks/ray_latency.py --rounds 5 --calls 5000
    .venv/bin/python benchmarks/ray_latency.py --failover     # + Ray restart/failover times

What it measures: a tiny app (``main`` and one ``Echo`` component in another group)
whose main makes ``--calls`` sequential ``await echo.echo(64 bytes)`` calls through
pyweaver's stubs after a warm-up, and logs their p50/p99 (measured in main's process),
then returns, which ends the deployment. The same app runs three ways, alternating
within each round so that load drifts hit them alike:

* ``ray, 2 hosts``: ``pyweaver ray deploy`` on a 2-node Ray cluster across two
  network-namespace hosts (``tests/cluster``: veth pairs into a bridge), main pinned to
  h1 and Echo to h2 (custom resources): the call crosses hosts over TCP;
* ``ray, 1 host``: the same cluster, both groups pinned to h1: TCP inside one host;
* ``multi``: ``pyweaver multi deploy`` on this machine: weavelets on Unix sockets.

It prints each run, the median p50 and p99 per way, and the ratios to ``multi``. The
hosts share one kernel and CPU, so "2 hosts" adds the veth/bridge path, not a real
network. ``--failover`` then runs ``tests/ray/test_cluster.py`` (a 3-node cluster:
replica SIGKILLed, host link cut) and prints the times it measured.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster import netns  # noqa: E402
from tests.cluster.netns import Host, Network  # noqa: E402
from tests.cluster.ray_cluster import RayCluster, skip_reason  # noqa: E402

APP = '''\
"""latency: main calls Echo (another group) sequentially and logs p50/p99."""
import os
import time
from typing import Protocol

import anyio

import pyweaver as weaver


class Echo(Protocol):
    async def echo(self, data: bytes) -> bytes: ...

    async def where(self) -> str: ...


class EchoImpl(weaver.Implements[Echo]):
    async def echo(self, data: bytes) -> bytes:
        return data

    async def where(self) -> str:
        return self.weaver_info.replica_id


async def main() -> None:
    root = await weaver.init()
    echo = await weaver.get(Echo, root)
    calls = int(os.environ.get("LATENCY_CALLS", "2000"))
    data = b"x" * 64
    for _ in range(max(calls // 10, 100)):  # warm-up: connections, caches
        await echo.echo(data)
    samples = []
    for _ in range(calls):
        began = time.perf_counter_ns()
        await echo.echo(data)
        samples.append(time.perf_counter_ns() - began)
    samples.sort()
    root.logger.info(
        "latency",
        calls=calls,
        p50_us=samples[len(samples) // 2] / 1000,
        p99_us=samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1000,
        callee=await echo.where(),
        caller=root.weaver_info.replica_id,
    )


if __name__ == "__main__":
    anyio.run(main)
'''


def write_app(directory: Path, calls: int, echo_host: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(APP)
    (directory / "weaver.toml").write_text(
        f"""[serviceweaver]
name = "latency"
binary = "app.py"
env = ["LATENCY_CALLS={calls}"]

[multi]
replicas = 1

[ray]
replicas = 1
[ray.groups.main]
resources = {{h1 = 1}}
[ray.groups."app.Echo"]
resources = {{{echo_host} = 1}}
"""
    )
    return directory / "weaver.toml"


def latency_entry(output: str) -> dict[str, Any]:
    """The ``latency`` log entry among the deploy command's JSON log lines."""
    for line in output.splitlines():
        if '"latency"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "latency":
            attrs: dict[str, Any] = entry.get("attrs") or {}  # every value a string
            return {
                **attrs,
                "p50_us": float(attrs["p50_us"]),
                "p99_us": float(attrs["p99_us"]),
            }
    raise RuntimeError(f"no latency entry in the deploy output:\n{output[-3000:]}")


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[-6:])} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result.stdout + result.stderr


def ray_once(cluster: RayCluster, config: Path, data: Path) -> dict[str, Any]:
    host: Host = cluster.head_host
    env = {**cluster.process_env(), "PYWEAVER_DATA_DIR": str(data)}
    argv = [sys.executable, "-m", "pyweaver", "ray", "deploy", str(config)]
    argv += ["--address", cluster.address, "--node-ip-address", host.address]
    argv += ["--format", "json"]
    return latency_entry(run(Network.exec_argv(host, argv), env, config.parent, 600))


def multi_once(config: Path, data: Path) -> dict[str, Any]:
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "pyweaver", "multi", "deploy", str(config), "--format", "json"]
    return latency_entry(run(argv, env, config.parent, 600))


def failover_lines() -> list[str]:
    """Run the 3-node Ray test and return the times it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/ray/test_cluster.py"],
        capture_output=True, text=True, cwd=REPO, timeout=1200, check=False,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    if result.returncode != 0:
        lines.append(f"(tests/ray/test_cluster.py exited {result.returncode})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failover", action="store_true")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    netns.cleanup_leftovers()
    results: dict[str, list[dict[str, Any]]] = {"ray, 2 hosts": [], "ray, 1 host": [], "multi": []}
    with tempfile.TemporaryDirectory(prefix="pyweaver-ray-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        two = write_app(root / "two", args.calls, "h2")
        one = write_app(root / "one", args.calls, "h1")
        began = time.monotonic()
        with Network.create(2) as network, RayCluster.start(network) as cluster:
            print(f"2-node Ray cluster up in {time.monotonic() - began:.1f} s", flush=True)
            for index in range(args.rounds):
                ways: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                    ("ray, 2 hosts", functools.partial(ray_once, cluster, two, data)),
                    ("ray, 1 host", functools.partial(ray_once, cluster, one, data)),
                    ("multi", functools.partial(multi_once, one, data)),
                ]
                if index % 2:
                    ways.reverse()
                for name, measure in ways:
                    entry = measure()
                    results[name].append(entry)
                    print(
                        f"round {index + 1} {name:<13} p50 {entry['p50_us']:8.1f} us"
                        f"  p99 {entry['p99_us']:8.1f} us"
                        f"  ({entry['caller']} -> {entry['callee']})",
                        flush=True,
                    )
    print(f"\ncomponent call, 64 B echo, {args.calls} sequential calls, {args.rounds} rounds")
    print("way             median p50    median p99    p50 / multi")
    base = statistics.median(e["p50_us"] for e in results["multi"])
    for name, entries in results.items():
        p50 = statistics.median(e["p50_us"] for e in entries)
        p99 = statistics.median(e["p99_us"] for e in entries)
        print(f"{name:<14} {p50:10.1f} us {p99:10.1f} us {p50 / base:10.2f}x")
    if args.failover:
        print("\nRay restart and failover with pyweaver on top (tests/ray/test_cluster.py):")
        for line in failover_lines():
            print(line)


if __name__ == "__main__":
    main()
