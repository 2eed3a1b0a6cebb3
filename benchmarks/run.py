"""One command for every pyweaver benchmark: ``make bench`` (= ``python benchmarks/run.py``).

Runs pyweaver and its peers in the same sitting on the same machine and prints
tables and the ratios the performance issues set as targets.  Ratios, not
absolute times, are the figures of merit: absolute numbers move with the
machine, ratios between things measured side by side move much less.

Suites (first argument; default ``all``):
    remote   pyweaver's call protocol vs grpc.aio, Pyro5, RPyC and the framed-CBOR
             floors: sequential p50/p99, 64 calls in flight, 64 KiB echo (issue 3)
    local    a colocated component call vs a plain ``await``; pyweaver's codec vs
             pickle on a medium attrs message (issue 2)
    collatz  the Collatz example app end to end (issue 4; slot, see COLLATZ_SCRIPT)
    tracing  the cost of tracing per call, off vs on, local and remote (issue 9;
             runs tracing_cost.py, not part of ``all``)
    all      remote, local and collatz
    boutique the HotOS'23 experiment on the Online Boutique (issue 11): colocated vs
             split pyweaver vs gRPC microservices under the same open-loop load; its own
             flags (``run.py boutique --help``); not part of ``all``

Theory of operation (the methodology of research/peer-baselines.md):
- Every remote measurement uses separate server and client processes.  The
  server prints ``READY <endpoint>``; a fresh client process makes each
  measurement and prints one JSON line (the convention is in benchlib.py).
- ``--rounds`` rounds; each round rotates the job order, and every other round
  reverses it, so no job always runs first or last.  Tables show the median
  across rounds and the min..max spread, so the noise is visible.
- Before each job the runner waits (bounded) until processes that are not its
  own use less than ``QUIET_CORES`` and a fixed loop runs within ``PROBE_SLOW`` of
  its best time in the run (a VM's host can slow its CPUs with no process here to
  show for it), and it records the CPU foreign processes used during every
  measurement.
- ``--pin cross`` pins clients (and in-process jobs) to CPU 0 and servers to
  CPU 1 with taskset, for repeatable latency on a 2-core machine.
A variant whose script is absent is reported as missing, one that crashes as
failed; the run goes on either way.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
QUIET_CORES = 0.15
QUIET_SAMPLE_S = 0.5
QUIET_TOTAL_BUDGET_S = 120.0  # past this much waiting in one run, stop waiting and just record
# A VM's CPU can be slowed by its host with no process here to show for it (the load
# average on the benchmark VM went from ~1 to ~9 within minutes, with nothing of ours
# running). Before each job a fixed loop is timed; slower than PROBE_SLOW times its
# best time in this run means the CPU is contended, and the job waits (bounded by the
# same budgets) for it to recover.
PROBE_SLOW = 1.3
PROBE_LOOP = 100_000
NOISY_CORES = 0.25  # a measurement that saw more foreign CPU than this is flagged
SERVER_READY_TIMEOUT_S = 30.0
SMALL, BIG = 16, 65536
COLLATZ_SCRIPT = "collatz_bench.py"


# ------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class RemoteVariant:
    """One server/client pair measured with seq/16, inflight/16 and inflight/65536."""

    name: str
    kind: str  # "pyweaver" | "peer" | "floor"
    script: str
    backend: str
    about: str
    transport: str = "tcp"
    extra: tuple[str, ...] = ()
    suite: str = "remote"
    pythonpath: str = ""  # run against another source tree (--baseline-src)
    env: tuple[tuple[str, str], ...] = ()  # extra environment for client and server


@dataclass(frozen=True)
class RowsJob:
    """An in-process script printing ``{"rows": {row: {metric: value} | {"missing": why}}}``."""

    name: str
    script: str
    about: str
    args: tuple[str, ...] = ()
    suite: str = "local"
    missing_reason: str = "script not written yet"
    pythonpath: str = ""


@dataclass(frozen=True)
class DeployVariant:
    """A component echo in a real 2-process deployment: one script run per round makes
    seq/16, inflight/16 and inflight/65536 and prints ``{"measurements": {...}}``."""

    name: str
    script: str
    backend: str
    about: str
    extra: tuple[str, ...] = ()
    kind: str = "component"
    transport: str = "unix"
    suite: str = "remote"
    pythonpath: str = ""
    env: tuple[tuple[str, str], ...] = ()


Job = RemoteVariant | RowsJob | DeployVariant

# Busy-polling off (pyweaver.call._spin): the rows that show what it buys.
NO_SPIN = (("PYWEAVER_SPIN_US", "0"),)

REMOTE_VARIANTS: tuple[RemoteVariant, ...] = (
    RemoteVariant("pyweaver-asyncio", "pyweaver", "remote_pyweaver.py", "asyncio",
                  "pyweaver.call client and server on asyncio (its default driver)"),
    RemoteVariant("pyweaver-uvloop", "pyweaver", "remote_pyweaver.py", "asyncio+uvloop",
                  "pyweaver.call client and server on asyncio + uvloop"),
    RemoteVariant("pyweaver-trio", "pyweaver", "remote_pyweaver.py", "trio",
                  "pyweaver.call client and server on trio"),
    RemoteVariant("pyweaver-uvloop-unix", "pyweaver", "remote_pyweaver.py", "asyncio+uvloop",
                  "pyweaver-uvloop over a Unix socket", transport="unix"),
    RemoteVariant("pyweaver-asyncio-unix", "pyweaver", "remote_pyweaver.py", "asyncio",
                  "pyweaver-asyncio over a Unix socket (the multi deployer's transport)",
                  transport="unix"),
    RemoteVariant("pyweaver-trio-unix", "pyweaver", "remote_pyweaver.py", "trio",
                  "pyweaver-trio over a Unix socket (the multi deployer's transport)",
                  transport="unix"),
    RemoteVariant("pyweaver-uvloop-unix-nospin", "pyweaver", "remote_pyweaver.py", "asyncio+uvloop",
                  "pyweaver-uvloop-unix with busy-polling off (PYWEAVER_SPIN_US=0)", transport="unix",
                  env=NO_SPIN),
    RemoteVariant("grpc-aio", "peer", "remote_grpc.py", "asyncio",
                  "gRPC aio, generic handler, raw bytes, one channel"),
    RemoteVariant("pyro5-msgpack", "peer", "remote_pyro5.py", "threads",
                  "Pyro5, msgpack, thread pool 128; 64 threads x own proxy"),
    RemoteVariant("rpyc", "peer", "remote_rpyc.py", "threads",
                  "RPyC ThreadedServer; 64 threads x own connection"),
    RemoteVariant("floor-streams-asyncio", "floor", "remote_floor.py", "asyncio",
                  "framed CBOR on asyncio streams", extra=("--impl", "streams")),
    RemoteVariant("floor-streams-uvloop", "floor", "remote_floor.py", "asyncio+uvloop",
                  "framed CBOR on asyncio streams, uvloop", extra=("--impl", "streams")),
    RemoteVariant("floor-protocol-uvloop", "floor", "remote_floor.py", "asyncio+uvloop",
                  "framed CBOR on asyncio Protocol, uvloop", extra=("--impl", "protocol")),
    RemoteVariant("floor-anyio-asyncio", "floor", "remote_floor.py", "asyncio",
                  "framed CBOR on anyio streams, asyncio", extra=("--impl", "anyio")),
    RemoteVariant("floor-anyio-trio", "floor", "remote_floor.py", "trio",
                  "framed CBOR on anyio streams, trio", extra=("--impl", "anyio")),
    RemoteVariant("floor-protocol-uvloop-unix", "floor", "remote_floor.py", "asyncio+uvloop",
                  "floor-protocol-uvloop over a Unix socket", transport="unix",
                  extra=("--impl", "protocol")),
)

COMPONENT_SCRIPT = "remote_component.py"
COMPONENT_VARIANTS: tuple[DeployVariant, ...] = (
    DeployVariant("component-asyncio", COMPONENT_SCRIPT, "asyncio",
                  "await stub.echo(x), 2-process multi deploy, asyncio"),
    DeployVariant("component-uvloop", COMPONENT_SCRIPT, "asyncio+uvloop",
                  "await stub.echo(x), 2-process multi deploy, asyncio + uvloop"),
    DeployVariant("component-trio", COMPONENT_SCRIPT, "trio",
                  "await stub.echo(x), 2-process multi deploy, trio"),
    DeployVariant("component-uvloop-traced", COMPONENT_SCRIPT, "asyncio+uvloop",
                  "component-uvloop with every call traced (--trace 1)", extra=("--trace", "1")),
    DeployVariant("component-uvloop-nospin", COMPONENT_SCRIPT, "asyncio+uvloop",
                  "component-uvloop with busy-polling off (PYWEAVER_SPIN_US=0)", env=NO_SPIN),
    # Controls: the raw protocol between the same two deployed processes (no stubs,
    # codec, metrics or weavelet client): what the deployment's processes cost by themselves.
    *(DeployVariant(f"deployed-protocol-{name}", COMPONENT_SCRIPT, backend,
                    f"pyweaver.call client/server between the deployment's two processes, {name}",
                    extra=("--variant", "raw"), kind="pyweaver")
      for name, backend in (("asyncio", "asyncio"), ("uvloop", "asyncio+uvloop"), ("trio", "trio"))),
)

LOCAL_JOBS: tuple[RowsJob, ...] = (
    RowsJob("local-asyncio", "local_calls.py",
            "await obj.method(x) vs colocated component call, asyncio", ("--backend", "asyncio")),
    RowsJob("local-trio", "local_calls.py",
            "await obj.method(x) vs colocated component call, trio", ("--backend", "trio")),
    RowsJob("local-asyncio-pure", "local_calls.py",
            "the same without pyweaver's C part (pure-Python stubs), asyncio",
            ("--backend", "asyncio", "--no-speedups")),
    RowsJob("local-trio-pure", "local_calls.py",
            "the same without pyweaver's C part (pure-Python stubs), trio",
            ("--backend", "trio", "--no-speedups")),
    RowsJob("codec-medium", "local_codec.py",
            "medium attrs message: pyweaver codec vs pickle, encode+decode"),
)

COLLATZ_JOBS: tuple[RowsJob, ...] = (
    RowsJob("collatz", COLLATZ_SCRIPT,
            "collatz example: one process vs multi (colocated, split), us per step",
            suite="collatz"),
)

# (measurement, metric names its JSON line yields, as row metric names)
REMOTE_MEASUREMENTS: tuple[tuple[str, int, dict[str, str]], ...] = (
    ("seq", SMALL, {"p50_us": "p50_us", "p99_us": "p99_us"}),
    ("inflight", SMALL, {"calls_per_s": "calls_per_s"}),
    ("inflight", BIG, {"calls_per_s": "calls_per_s_64k"}),
)


# ------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """numerator/denominator compared with `bound`; `target=False` rows are for information."""

    label: str
    numerator: tuple[str, str]  # (row, metric)
    denominator: tuple[str, str]
    op: str  # "<=" or ">="
    bound: float
    target: bool = True


def _t(label: str, num: str, den: str, metric: str, op: str, bound: float,
       target: bool = True, den_metric: str | None = None) -> Target:
    return Target(label, (num, metric), (den, den_metric or metric), op, bound, target)


TARGETS: tuple[Target, ...] = (
    # issue 3: remote calls
    _t("64 in flight: pyweaver-asyncio / grpc-aio", "pyweaver-asyncio", "grpc-aio", "calls_per_s", ">=", 4),
    _t("64 in flight: pyweaver-asyncio / pyro5-msgpack", "pyweaver-asyncio", "pyro5-msgpack", "calls_per_s", ">=", 1.5),
    _t("64 in flight: pyweaver-uvloop / grpc-aio", "pyweaver-uvloop", "grpc-aio", "calls_per_s", ">=", 4, False),
    _t("64 in flight: pyweaver-uvloop / pyro5-msgpack", "pyweaver-uvloop", "pyro5-msgpack", "calls_per_s", ">=", 1.5, False),
    _t("64 in flight: pyweaver-trio / grpc-aio", "pyweaver-trio", "grpc-aio", "calls_per_s", ">=", 4, False),
    _t("64 in flight: pyweaver-trio / pyro5-msgpack", "pyweaver-trio", "pyro5-msgpack", "calls_per_s", ">=", 1.5, False),
    _t("seq p50: pyweaver-asyncio / grpc-aio", "pyweaver-asyncio", "grpc-aio", "p50_us", "<=", 0.3),
    _t("seq p50: pyweaver-uvloop / pyro5-msgpack", "pyweaver-uvloop", "pyro5-msgpack", "p50_us", "<=", 1.0),
    _t("seq p50: pyweaver-uvloop / rpyc", "pyweaver-uvloop", "rpyc", "p50_us", "<=", 1.0),
    _t("seq p50: pyweaver-asyncio / floor-streams-asyncio", "pyweaver-asyncio", "floor-streams-asyncio", "p50_us", "<=", 1.5),
    _t("64 in flight: pyweaver-asyncio / floor-streams-asyncio", "pyweaver-asyncio", "floor-streams-asyncio", "calls_per_s", ">=", 0.5),
    _t("seq p50: pyweaver-trio / floor-anyio-trio", "pyweaver-trio", "floor-anyio-trio", "p50_us", "<=", 1.5),
    _t("64 in flight: pyweaver-trio / floor-anyio-trio", "pyweaver-trio", "floor-anyio-trio", "calls_per_s", ">=", 0.5),
    _t("seq p50: pyweaver-uvloop / floor-streams-uvloop", "pyweaver-uvloop", "floor-streams-uvloop", "p50_us", "<=", 1.5, False),
    _t("64 in flight: pyweaver-uvloop / floor-streams-uvloop", "pyweaver-uvloop", "floor-streams-uvloop", "calls_per_s", ">=", 0.5, False),
    _t("64 KiB x64: pyweaver-asyncio / grpc-aio", "pyweaver-asyncio", "grpc-aio", "calls_per_s_64k", ">=", 1.5),
    _t("64 KiB x64: pyweaver-trio / grpc-aio", "pyweaver-trio", "grpc-aio", "calls_per_s_64k", ">=", 1.5, False),
    _t("seq p50: pyweaver-uvloop-unix / floor-protocol-uvloop-unix", "pyweaver-uvloop-unix", "floor-protocol-uvloop-unix", "p50_us", "<=", 1.5, False),
    _t("64 in flight: pyweaver-uvloop-unix / floor-protocol-uvloop-unix", "pyweaver-uvloop-unix", "floor-protocol-uvloop-unix", "calls_per_s", ">=", 0.5, False),
    # issue 8: component calls as fast as the protocol under them (same backend, Unix socket)
    *(t for backend, raw in (("asyncio", "pyweaver-asyncio-unix"), ("uvloop", "pyweaver-uvloop-unix"),
                             ("trio", "pyweaver-trio-unix"))
      for t in (
          _t(f"seq p50: component-{backend} / {raw}", f"component-{backend}", raw, "p50_us", "<=", 1.25),
          _t(f"64 in flight: component-{backend} / {raw}", f"component-{backend}", raw, "calls_per_s", ">=", 0.7),
          _t(f"64 KiB x64: component-{backend} / {raw}", f"component-{backend}", raw, "calls_per_s_64k", ">=", 0.7,
             False),
      )),
    *(_t(f"{label}: component-{b} / deployed-protocol-{b}", f"component-{b}", f"deployed-protocol-{b}", metric,
         op, bound, False)
      for b in ("asyncio", "uvloop", "trio")
      for label, metric, op, bound in (("seq p50", "p50_us", "<=", 1.25), ("64 in flight", "calls_per_s", ">=", 0.7),
                                       ("64 KiB x64", "calls_per_s_64k", ">=", 0.7))),
    _t("seq p50: component-uvloop / pyro5-msgpack", "component-uvloop", "pyro5-msgpack", "p50_us", "<=", 0.65),
    _t("seq p50: component-uvloop / rpyc", "component-uvloop", "rpyc", "p50_us", "<=", 0.65),
    _t("64 KiB x64: component-asyncio / pyweaver-asyncio-unix", "component-asyncio", "pyweaver-asyncio-unix",
       "calls_per_s_64k", ">=", 0.6),
    _t("64 KiB x64: component-asyncio / component-trio", "component-asyncio", "component-trio",
       "calls_per_s_64k", ">=", 1.0),
    _t("seq p50: component-uvloop-traced / component-uvloop", "component-uvloop-traced", "component-uvloop",
       "p50_us", "<=", 1.5),
    _t("64 in flight: component-uvloop / component-uvloop-traced", "component-uvloop",
       "component-uvloop-traced", "calls_per_s", "<=", 1.5),
    _t("seq p50: component-uvloop / component-uvloop-nospin", "component-uvloop", "component-uvloop-nospin",
       "p50_us", "<=", 1.0, False),
    _t("64 in flight: component-uvloop / component-uvloop-nospin", "component-uvloop",
       "component-uvloop-nospin", "calls_per_s", ">=", 0.9, False),
    _t("seq p50: pyweaver-uvloop-unix / pyweaver-uvloop-unix-nospin", "pyweaver-uvloop-unix",
       "pyweaver-uvloop-unix-nospin", "p50_us", "<=", 1.0, False),
    # issue 2 (bound tightened by issue 8): in-process
    _t("colocated call / plain await, asyncio", "local-asyncio/pyweaver-call", "local-asyncio/plain-await", "ns_per_call", "<=", 2),
    _t("colocated call / plain await, trio", "local-trio/pyweaver-call", "local-trio/plain-await", "ns_per_call", "<=", 2),
    _t("bare wrapper (the floor of a wrapping stub) / plain await, asyncio", "local-asyncio/bare-wrapper",
       "local-asyncio/plain-await", "ns_per_call", "<=", 2, False),
    _t("bare wrapper (the floor of a wrapping stub) / plain await, trio", "local-trio/bare-wrapper",
       "local-trio/plain-await", "ns_per_call", "<=", 2, False),
    _t("colocated call without the C part / plain await, asyncio", "local-asyncio-pure/pyweaver-call",
       "local-asyncio-pure/plain-await", "ns_per_call", "<=", 2, False),
    _t("colocated call without the C part / plain await, trio", "local-trio-pure/pyweaver-call",
       "local-trio-pure/plain-await", "ns_per_call", "<=", 2, False),
    _t("tracing off / tracing hooks removed, colocated, asyncio", "local-asyncio/pyweaver-call",
       "local-asyncio/pyweaver-call-nohooks", "ns_per_call", "<=", 1.02),
    _t("tracing off / tracing hooks removed, colocated, trio", "local-trio/pyweaver-call",
       "local-trio/pyweaver-call-nohooks", "ns_per_call", "<=", 1.02),
    _t("codec round trip / pickle, medium message", "codec-medium/pyweaver-codec", "codec-medium/pickle", "us_per_round_trip", "<=", 0.8),
    # issue 4: the colocation argument (information, no target)
    _t("collatz: multi all colocated / one process", "collatz/multi-all-colocated", "collatz/single-process", "us_per_step", "<=", 1.5, False),
    _t("collatz: multi Odd+Even colocated / one process", "collatz/multi-odd-even-colocated", "collatz/single-process", "us_per_step", ">=", 1.0, False),
    _t("collatz: multi process per component / one process", "collatz/multi-process-per-component", "collatz/single-process", "us_per_step", ">=", 1.0, False),
)


# ------------------------------------------------------------------ foreign CPU


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, utime+stime ticks, start time) for every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            fields = stat[stat.rindex(")") + 2:].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return table


class ForeignCpu:
    """CPU used by processes that are neither this runner nor its descendants (nor kernel threads)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = os.path.isdir("/proc/self")

    def snapshot(self) -> tuple[dict[int, tuple[int, int]], float]:
        if not self.available:
            return {}, time.perf_counter()
        table = _process_table()
        ours = {os.getpid()}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _ticks, _start) in table.items():
                if pid not in ours and ppid in ours:
                    ours.add(pid)
                    changed = True
        foreign = {pid: (ticks, start) for pid, (ppid, ticks, start) in table.items()
                   if pid not in ours and pid != 2 and ppid != 2}
        return foreign, time.perf_counter()

    def cores(self, before: tuple[dict[int, tuple[int, int]], float],
              after: tuple[dict[int, tuple[int, int]], float]) -> float:
        (old, t0), (new, t1) = before, after
        ticks = 0
        for pid, (used, start) in new.items():
            previous = old.get(pid)
            ticks += used - previous[0] if previous and previous[1] == start else used
        return ticks / self.tick / max(t1 - t0, 1e-6)


# ------------------------------------------------------------------ running


@dataclass
class Context:
    rounds: int
    seconds: float
    pin: str
    quiet_wait_s: float
    log: Callable[[str], None]
    tmpdir: str
    foreign: ForeignCpu = field(default_factory=ForeignCpu)
    quiet_waited_s: float = 0.0
    best_probe_s: float = float("inf")
    records: list[dict[str, Any]] = field(default_factory=list)

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", "0"] if self.pin == "cross" else []

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", "1"] if self.pin == "cross" else []

    def env(self, pythonpath: str = "", extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
        env = dict(os.environ)
        env["TMPDIR"] = self.tmpdir
        env["PYTHONUNBUFFERED"] = "1"
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env.update(extra)
        return env

    def wait_quiet(self) -> float:
        """Wait (bounded) until foreign processes use < QUIET_CORES and the CPU probe
        runs within PROBE_SLOW of its best; return the last foreign-CPU reading."""
        deadline = time.perf_counter() + self.quiet_wait_s
        started = time.perf_counter()
        while True:
            before = self.foreign.snapshot()
            time.sleep(QUIET_SAMPLE_S)
            cores = self.foreign.cores(before, self.foreign.snapshot())
            slowed = self.probe() if cores < QUIET_CORES and self.quiet_wait_s > 0 else 1.0
            out_of_time = (time.perf_counter() > deadline
                           or self.quiet_waited_s + time.perf_counter() - started > QUIET_TOTAL_BUDGET_S)
            quiet = cores < QUIET_CORES and slowed <= PROBE_SLOW
            if quiet or out_of_time or self.quiet_wait_s <= 0:
                self.quiet_waited_s += time.perf_counter() - started
                if cores >= QUIET_CORES and self.quiet_wait_s > 0:
                    self.log(f"  (machine not quiet: foreign processes use {cores:.2f} cores; going on)")
                elif slowed > PROBE_SLOW:
                    self.log(f"  (machine not quiet: the CPU probe took {slowed:.2f}x its best; going on)")
                return cores

    def probe(self) -> float:
        """Time a fixed loop (best of 5); return it over the best time seen in this run."""
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            total = 0
            for i in range(PROBE_LOOP):
                total += i
            best = min(best, time.perf_counter() - started)
        self.best_probe_s = min(self.best_probe_s, best)
        return best / self.best_probe_s


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def tail(text: str, chars: int = 600) -> str:
    text = text.strip()
    return text[-chars:] if text else "(no output)"


class Server:
    """A benchmark server process in its own session, stopped by its pid: SIGTERM, grace, SIGKILL."""

    def __init__(self, argv: list[str], ctx: Context, pythonpath: str = "",
                 extra_env: tuple[tuple[str, str], ...] = ()) -> None:
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed in stop()
            "w+", dir=ctx.tmpdir, prefix="server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(argv, cwd=HERE, env=ctx.env(pythonpath, extra_env),
                                        stdout=self.log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def output(self) -> str:
        with open(self.log_file.name, errors="replace") as f:
            return f.read()

    def wait_ready(self) -> str:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith("READY "):
                    return line.split(maxsplit=1)[1].strip()
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {tail(self.output())}")
            time.sleep(0.02)
        raise RuntimeError(f"server not READY after {SERVER_READY_TIMEOUT_S:.0f} s: {tail(self.output())}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        finally:
            self.log_file.close()
            os.unlink(self.log_file.name)


def run_client(argv: list[str], ctx: Context, timeout: float, pythonpath: str = "",
               extra_env: tuple[tuple[str, str], ...] = ()) -> tuple[dict[str, Any] | None, str]:
    """Run one client process; return (its JSON line, error text if none)."""
    process = subprocess.Popen(argv, cwd=HERE, env=ctx.env(pythonpath, extra_env),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=10)
        return None, f"client timed out after {timeout:.0f} s: {tail(err)}"
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): the client must not outlive the runner.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        raise
    result = last_json_line(out)
    if result is None:
        return None, f"exit {process.returncode}, no JSON line: {tail(err or out)}"
    return result, ""


def run_remote(job: RemoteVariant, round_no: int, ctx: Context) -> None:
    script = HERE / job.script
    base = {"suite": job.suite, "job": job.name, "row": job.name, "round": round_no}
    measurements = [f"{mode}/{size}" for mode, size, _ in REMOTE_MEASUREMENTS]
    if not script.exists():
        for m in measurements:
            ctx.records.append({**base, "measurement": m, "status": "missing",
                                "error": f"benchmarks/{job.script} does not exist"})
        ctx.log(f"r{round_no} {job.name}: missing (benchmarks/{job.script} does not exist)")
        return
    pre = ctx.wait_quiet()
    common = ["--backend", job.backend, *job.extra]
    server = Server([*ctx.server_prefix(), PYTHON, str(script), "--serve",
                     "--transport", job.transport, *common], ctx, job.pythonpath, job.env)
    try:
        try:
            endpoint = server.wait_ready()
        except RuntimeError as exc:
            for m in measurements:
                ctx.records.append({**base, "measurement": m, "status": "failed", "error": str(exc)})
            ctx.log(f"r{round_no} {job.name}: FAILED {str(exc)[:300]}")
            return
        for (mode, size, metrics), m in zip(REMOTE_MEASUREMENTS, measurements, strict=True):
            record: dict[str, Any] = {**base, "measurement": m, "pre_foreign_cores": pre}
            if not server.alive():
                record.update(status="failed", error=f"server died: {tail(server.output())}")
                ctx.records.append(record)
                continue
            argv = [*ctx.client_prefix(), PYTHON, str(script), "--connect", endpoint, *common,
                    "--mode", mode, "--payload", str(size), "--seconds", f"{ctx.seconds:g}"]
            before = ctx.foreign.snapshot()
            started = time.perf_counter()
            result, error = run_client(argv, ctx, timeout=3 * ctx.seconds + 60, pythonpath=job.pythonpath,
                                       extra_env=job.env)
            record["wall_s"] = time.perf_counter() - started
            record["loadavg_1m"] = os.getloadavg()[0]
            record["foreign_cores"] = ctx.foreign.cores(before, ctx.foreign.snapshot())
            missing = [key for key in metrics if not isinstance((result or {}).get(key), int | float)]
            if result is None or missing:
                record.update(status="failed", error=error or f"JSON line lacks {missing}: {result}")
            else:
                record.update(status="ok", raw=result,
                              metrics={name: float(result[key]) for key, name in metrics.items()})
            ctx.records.append(record)
    finally:
        server.stop()
    done = [r for r in ctx.records[-len(measurements):] if r["job"] == job.name]
    ctx.log(f"r{round_no} {job.name}: " + "  ".join(_describe(r) for r in done))


def run_deploy(job: DeployVariant, round_no: int, ctx: Context) -> None:
    """One deployment of the component echo; its three measurements become three records
    of the same shape as a RemoteVariant's, so they share the remote table and targets."""
    script = HERE / job.script
    base = {"suite": job.suite, "job": job.name, "row": job.name, "round": round_no}
    measurements = [(f"{mode}/{size}", metrics) for mode, size, metrics in REMOTE_MEASUREMENTS]
    pre = ctx.wait_quiet()
    # Pinning is done inside the deployment (main on CPU 0, Echo on CPU 1), like a
    # RemoteVariant's client and server.
    argv = [PYTHON, str(script), "--backend", job.backend, *job.extra, "--pin", ctx.pin,
            "--seconds", f"{ctx.seconds:g}"]
    before = ctx.foreign.snapshot()
    started = time.perf_counter()
    result, error = run_client(argv, ctx, timeout=10 * ctx.seconds + 120, pythonpath=job.pythonpath,
                               extra_env=job.env)
    wall = time.perf_counter() - started
    foreign = ctx.foreign.cores(before, ctx.foreign.snapshot())
    found = (result or {}).get("measurements") or {}
    for m, metrics in measurements:
        record: dict[str, Any] = {**base, "measurement": m, "pre_foreign_cores": pre,
                                  "foreign_cores": foreign, "wall_s": wall,
                                  "loadavg_1m": os.getloadavg()[0]}
        values = found.get(m)
        missing = [key for key in metrics if not isinstance((values or {}).get(key), int | float)]
        if values is None or missing:
            record.update(status="failed", error=error or f"no {m} in {result}")
        else:
            record.update(status="ok", raw=values,
                          metrics={name: float(values[key]) for key, name in metrics.items()})
        ctx.records.append(record)
    done = ctx.records[-len(measurements):]
    ctx.log(f"r{round_no} {job.name}: " + "  ".join(_describe(r) for r in done))


def _describe(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"{record['measurement']} {record['status'].upper()} {record.get('error', '')[:200]}"
    parts = [f"{k} {fmt_value(k, v)}" for k, v in record["metrics"].items()]
    return f"{record['measurement']}: {', '.join(parts)} (foreign {record['foreign_cores']:.2f})"


def run_rows(job: RowsJob, round_no: int, ctx: Context) -> None:
    script = HERE / job.script
    base = {"suite": job.suite, "job": job.name, "round": round_no, "measurement": "rows"}
    if not script.exists():
        ctx.records.append({**base, "row": job.name, "status": "missing", "error": job.missing_reason})
        ctx.log(f"r{round_no} {job.name}: missing ({job.missing_reason})")
        return
    pre = ctx.wait_quiet()
    argv = [*ctx.client_prefix(), PYTHON, str(script), *job.args, "--seconds", f"{ctx.seconds:g}"]
    before = ctx.foreign.snapshot()
    started = time.perf_counter()
    result, error = run_client(argv, ctx, timeout=20 * ctx.seconds + 120, pythonpath=job.pythonpath)
    wall = time.perf_counter() - started
    foreign = ctx.foreign.cores(before, ctx.foreign.snapshot())
    rows = (result or {}).get("rows")
    if not isinstance(rows, dict):
        ctx.records.append({**base, "row": job.name, "status": "failed",
                            "error": error or f"no 'rows' in {result}"})
        ctx.log(f"r{round_no} {job.name}: FAILED {(error or str(result))[:300]}")
        return
    for row, values in rows.items():
        record: dict[str, Any] = {**base, "row": f"{job.name}/{row}", "pre_foreign_cores": pre,
                                  "foreign_cores": foreign, "wall_s": wall}
        if "missing" in values or "failed" in values:
            status = "missing" if "missing" in values else "failed"
            record.update(status=status, error=str(values.get(status)))
        else:
            record.update(status="ok", metrics={k: float(v) for k, v in values.items()
                                                if isinstance(v, int | float) and not isinstance(v, bool)},
                          raw=values)
        ctx.records.append(record)
    ctx.log(f"r{round_no} {job.name}: " + "  ".join(
        f"{r['row'].split('/', 1)[1]}: " + (", ".join(f"{k} {fmt_value(k, v)}" for k, v in r["metrics"].items())
                                           if r["status"] == "ok" else f"{r['status'].upper()} {r['error'][:200]}")
        for r in ctx.records if r["job"] == job.name and r["round"] == round_no)
        + f" (foreign {foreign:.2f})")


def schedule(jobs: list[Job], round_no: int) -> list[Job]:
    """Rotate the order by the round number and reverse it every other round."""
    if not jobs:
        return []
    k = round_no % len(jobs)
    order = jobs[k:] + jobs[:k]
    if round_no % 2:
        order.reverse()
    return order


def run_all(jobs: list[Job], ctx: Context) -> None:
    for round_no in range(ctx.rounds):
        for job in schedule(jobs, round_no):
            if isinstance(job, RemoteVariant):
                run_remote(job, round_no, ctx)
            elif isinstance(job, DeployVariant):
                run_deploy(job, round_no, ctx)
            else:
                run_rows(job, round_no, ctx)


# ------------------------------------------------------------------ summary


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """row -> {"status", "errors", "metrics": {metric: {median, min, max, n, by_round}}, "noisy"}."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        row = rows.setdefault(record["row"], {"job": record["job"], "suite": record["suite"],
                                              "ok": 0, "failed": 0, "missing": 0, "errors": [],
                                              "metrics": {}, "max_foreign_cores": 0.0})
        row[record["status"]] += 1
        if record["status"] != "ok":
            row["errors"].append((f"r{record['round']} {record['measurement']}", record.get("error", "")))
            continue
        row["max_foreign_cores"] = max(row["max_foreign_cores"], record.get("foreign_cores", 0.0))
        for metric, value in record["metrics"].items():
            row["metrics"].setdefault(metric, {"by_round": {}})["by_round"][record["round"]] = value
    for row in rows.values():
        row["status"] = ("missing" if row["missing"] and not row["ok"] and not row["failed"]
                         else "failed" if row["failed"] and not row["ok"]
                         else "partial" if row["failed"] or row["missing"] else "ok")
        for stats in row["metrics"].values():
            values = list(stats["by_round"].values())
            stats.update(median=statistics.median(values), min=min(values), max=max(values), n=len(values))
    return rows


def evaluate(targets: Iterable[Target], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for target in targets:
        entry: dict[str, Any] = {"label": target.label, "op": target.op, "bound": target.bound,
                                 "target": target.target}
        num = rows.get(target.numerator[0], {}).get("metrics", {}).get(target.numerator[1])
        den = rows.get(target.denominator[0], {}).get("metrics", {}).get(target.denominator[1])
        if num is None or den is None or not den["median"]:
            absent = [name for name, stats in ((target.numerator[0], num), (target.denominator[0], den))
                      if stats is None]
            entry.update(verdict="n/a", why=f"no data for {', '.join(absent) or 'denominator'}")
            out.append(entry)
            continue
        ratio = num["median"] / den["median"]
        per_round = [num["by_round"][r] / den["by_round"][r] for r in num["by_round"]
                     if r in den["by_round"] and den["by_round"][r]]
        met = ratio <= target.bound if target.op == "<=" else ratio >= target.bound
        entry.update(ratio=ratio, per_round_min=min(per_round, default=ratio),
                     per_round_max=max(per_round, default=ratio),
                     verdict="met" if met else "not met")
        out.append(entry)
    return out


# ------------------------------------------------------------------ printing

METRIC_UNITS = {"p50_us": "us", "p99_us": "us", "calls_per_s": "/s", "calls_per_s_64k": "/s"}


def fmt_value(metric: str, value: float) -> str:
    if metric.startswith("calls_per_s") or value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_stat(stats: dict[str, Any] | None, metric: str, spread: bool = True) -> str:
    if stats is None:
        return "-"
    text = fmt_value(metric, stats["median"])
    if spread and stats["n"] > 1:
        text += f" [{fmt_value(metric, stats['min'])}..{fmt_value(metric, stats['max'])}]"
    return text


def table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body, strict=True)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, ["-" * w for w in widths], *body]]
    return "\n".join(lines)


def row_state(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not run"
    if row["status"] == "ok":
        return "ok" if row["max_foreign_cores"] <= NOISY_CORES else f"noisy ({row['max_foreign_cores']:.2f} cores)"
    if row["status"] == "partial":
        return f"partial ({row['failed']} failed, {row['missing']} missing)"
    return str(row["status"])


def report(rows: dict[str, dict[str, Any]], ratios: list[dict[str, Any]], jobs: list[Job],
           meta: dict[str, Any]) -> str:
    loads = [r["loadavg_1m"] for r in meta.get("_records", []) if "loadavg_1m" in r]
    load = (f" Load average (1 min) during the measurements: median {statistics.median(loads):.2f}, "
            f"[{min(loads):.2f}..{max(loads):.2f}]." if loads else "")
    parts = [f"pyweaver benchmarks: {meta['rounds']} round(s), {meta['seconds']:g} s windows, "
             f"pin={meta['pin']}, {meta['cpus']} CPUs, Python {meta['python']}. "
             "Cells: median across rounds [min..max]." + load]
    remote = [j for j in jobs if isinstance(j, RemoteVariant | DeployVariant)]
    if remote:
        body = []
        for job in remote:
            row = rows.get(job.name)
            metrics = row["metrics"] if row else {}
            body.append([job.name, job.kind, job.backend, job.transport,
                         fmt_stat(metrics.get("p50_us"), "p50_us"),
                         fmt_stat(metrics.get("p99_us"), "p99_us", spread=False),
                         fmt_stat(metrics.get("calls_per_s"), "calls_per_s"),
                         fmt_stat(metrics.get("calls_per_s_64k"), "calls_per_s_64k"),
                         row_state(row)])
        parts.append("\nRemote echo (16-byte payload unless noted; 64 in flight from one client process)\n"
                     + table(["variant", "kind", "backend", "net", "seq p50 us", "seq p99 us",
                              "64 in flight calls/s", "64 KiB x64 calls/s", "state"], body))
    rows_jobs = [j for j in jobs if isinstance(j, RowsJob)]
    if rows_jobs:
        body = []
        for rows_job in rows_jobs:
            names = [name for name in rows if rows[name]["job"] == rows_job.name]
            for name in names or [rows_job.name]:
                row = rows.get(name)
                metrics = row["metrics"] if row else {}
                main_metrics = [m for m in ("ns_per_call", "us_per_round_trip") if m in metrics]
                shown = ", ".join(f"{m} {fmt_stat(metrics[m], m)}" for m in main_metrics) or "-"
                extras = ", ".join(f"{m} {fmt_value(m, s['median'])}" for m, s in metrics.items()
                                   if m not in main_metrics)
                body.append([name, shown, extras, row_state(row)])
        parts.append("\nIn-process\n" + table(["row", "median [min..max]", "other (medians)", "state"], body))
    if ratios:
        body = []
        for entry in ratios:
            if entry["verdict"] == "n/a":
                ratio, spread = "-", entry["why"]
            else:
                ratio = f"{entry['ratio']:.2f}x"
                spread = f"[{entry['per_round_min']:.2f}..{entry['per_round_max']:.2f}]"
            body.append([entry["label"], ratio, spread, f"{entry['op']} {entry['bound']:g}",
                         entry["verdict"] if entry["target"] else f"({entry['verdict']}, info)"])
        counted = [e for e in ratios if e["target"] and e["verdict"] != "n/a"]
        met = sum(e["verdict"] == "met" for e in counted)
        parts.append("\nRatios (ratio of medians; per-round ratios [min..max]; info rows are not targets)\n"
                     + table(["ratio", "value", "per round", "target", "verdict"], body)
                     + f"\n\nTargets met: {met} of {len(counted)} measured "
                       f"({sum(e['target'] for e in ratios) - len(counted)} without data).")
    lines = []
    for name, row in rows.items():
        # The same error in every round and measurement is one line, not a dozen.
        grouped: dict[str, list[str]] = {}
        for where, error in row["errors"]:
            grouped.setdefault(error, []).append(where)
        lines += [f"- {name} ({len(wheres)}x: {', '.join(wheres[:3])}{', ...' if len(wheres) > 3 else ''}): "
                  f"{error[:400]}" for error, wheres in grouped.items()]
    if lines:
        parts.append("\nMissing and failed\n" + "\n".join(lines))
    return "\n".join(parts)


# ------------------------------------------------------------------ main


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("pyweaver", "anyio", "trio", "cbor2", "cattrs", "attrs", "uvloop", "grpcio",
                 "Pyro5", "rpyc", "msgpack"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import cbor2
        import cbor2._cbor2

        versions["cbor2 C extension"] = str(cbor2.dumps is cbor2._cbor2.dumps)
    except ImportError:
        versions["cbor2 C extension"] = "False"
    return versions


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def select_jobs(suite: str, only: str | None) -> list[Job]:
    jobs: list[Job] = []
    if suite in ("remote", "all"):
        jobs += REMOTE_VARIANTS
        jobs += COMPONENT_VARIANTS
    if suite in ("local", "all"):
        jobs += LOCAL_JOBS
    if suite in ("collatz", "all"):
        jobs += COLLATZ_JOBS
    if only:
        pattern = re.compile(only)
        jobs = [job for job in jobs if pattern.search(job.name)]
    return jobs


def baseline_jobs(jobs: list[Job], source: str) -> list[Job]:
    """VARIANT@before for each pyweaver and component remote variant: the same job run
    against another source tree, so before and after share the run's rounds and noise."""
    import dataclasses

    return [dataclasses.replace(job, name=f"{job.name}@before", pythonpath=source)
            for job in jobs if (isinstance(job, RemoteVariant | DeployVariant)
                                and job.kind in ("pyweaver", "component"))
            or (isinstance(job, RowsJob) and job.name.startswith("local-"))]


def before_after_targets(rows: dict[str, dict[str, Any]]) -> list[Target]:
    """Information rows: each VARIANT / VARIANT@before measured in the run."""
    out = []
    for name in rows:
        job = rows[name]["job"]
        if job.endswith("@before") and "/" in name:  # a row of an in-process job
            after = f"{job[: -len('@before')]}/{name.split('/', 1)[1]}"
            if after in rows:
                out.append(_t(f"after/before: {after}", after, name, "ns_per_call", "<=", 1.0, False))
            continue
        if not name.endswith("@before") or name[: -len("@before")] not in rows:
            continue
        after = name[: -len("@before")]
        for label, metric, op in (("seq p50", "p50_us", "<="), ("64 in flight", "calls_per_s", ">="),
                                  ("64 KiB x64", "calls_per_s_64k", ">=")):
            out.append(_t(f"after/before {label}: {after}", after, name, metric, op, 1.0, False))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run pyweaver's benchmarks and print ratios against peers measured in the same run.")
    parser.add_argument("suite", nargs="?", default="all",
                        choices=["remote", "local", "collatz", "tracing", "all", "boutique", "breakdown"],
                        help="breakdown: where the microseconds of one component call go "
                             "(benchmarks/breakdown.py; options after -- go to it)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each running every job once (3: quick; 5-7: careful)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="measurement window per client process (seq runs are capped by it)")
    parser.add_argument("--only", metavar="REGEX", help="run only jobs whose name matches (re.search)")
    parser.add_argument("--pin", choices=["none", "cross"], default="none",
                        help="cross: clients on CPU 0, servers on CPU 1 (taskset)")
    parser.add_argument("--json", metavar="OUT", type=Path,
                        help="write meta, raw records, summary and ratios as JSON")
    parser.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                        help=f"wait up to S seconds before each job for foreign CPU < {QUIET_CORES} cores "
                             f"(0: do not wait; total waiting is capped at {QUIET_TOTAL_BUDGET_S:.0f} s)")
    parser.add_argument("--baseline-src", metavar="DIR", type=Path,
                        help="also run every selected pyweaver/component remote variant against the "
                             "pyweaver sources in DIR (e.g. a `git archive` of the commit before a "
                             "change), as rows named VARIANT@before, interleaved in the same rounds")
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    if args.pin == "cross" and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        parser.error("--pin cross needs taskset and at least 2 CPUs")
    return args


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so the finally blocks stop every server we started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["boutique"]:
        # Its own runner and flags (benchmarks/boutique/experiment.py), in its own process.
        return subprocess.call([PYTHON, str(HERE / "boutique" / "experiment.py"), *argv[1:]])
    if argv[:1] == ["breakdown"]:
        # The per-layer breakdown of one component call: its own script, its own options.
        rest = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        return subprocess.call([PYTHON, str(HERE / "breakdown.py"), *rest], cwd=HERE)
    args = parse_args(argv)
    if args.suite == "tracing":
        return subprocess.call([PYTHON, str(HERE / "tracing_cost.py")])
    jobs = select_jobs(args.suite, args.only)
    if args.baseline_src:
        jobs += baseline_jobs(jobs, str(args.baseline_src.resolve()))
    if args.list:
        for job in jobs:
            print(f"{job.name:32} {job.suite:8} {job.about}")
        return 0
    if not jobs:
        print("no job matches", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    meta: dict[str, Any] = {
        "suite": args.suite, "rounds": args.rounds, "seconds": args.seconds, "pin": args.pin,
        "only": args.only, "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "commit": git_commit(), "versions": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def log(message: str) -> None:
        print(time.strftime("%H:%M:%S ") + message, flush=True)

    log(f"{len(jobs)} jobs x {args.rounds} rounds: {', '.join(job.name for job in jobs)}")
    with tempfile.TemporaryDirectory(prefix="pyweaver-bench-") as tmpdir:
        ctx = Context(rounds=args.rounds, seconds=args.seconds, pin=args.pin,
                      quiet_wait_s=args.quiet_wait, log=log, tmpdir=tmpdir)
        started = time.perf_counter()
        try:
            run_all(jobs, ctx)
        except KeyboardInterrupt:
            log("interrupted; reporting what was measured")
        meta["elapsed_s"] = time.perf_counter() - started
        meta["quiet_waited_s"] = ctx.quiet_waited_s
    rows = summarize(ctx.records)
    ran = {job.name for job in jobs}
    ratios = evaluate([t for t in TARGETS if _job_of(t.numerator[0]) in ran
                       and _job_of(t.denominator[0]) in ran] + before_after_targets(rows), rows)
    print()
    print(report(rows, ratios, jobs, {**meta, "_records": ctx.records}))
    print(f"\nElapsed {meta['elapsed_s']:.0f} s (of which {ctx.quiet_waited_s:.0f} s waiting for a quiet machine).")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "records": ctx.records, "rows": rows,
                                         "ratios": ratios}, indent=1, default=str))
        print(f"JSON written to {args.json}")
    return 0


def _job_of(row: str) -> str:
    return row.split("/", 1)[0]


if __name__ == "__main__":
    sys.exit(main())
