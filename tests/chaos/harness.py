"""The chaos run shared by ``tests/chaos/test_chaos.py`` (short) and
``benchmarks/chaos.py`` (long): ``pyweaver multi deploy`` of ``tests/chaos/app.py``,
bounded HTTP load through the listener proxy on 127.0.0.1, and a chaos driver that
SIGKILLs and SIGSTOPs/SIGCONTs Counter replicas (PIDs from the status endpoint) and
holds idle connections open on every socket it can reach (the proxy's listener and each
weavelet's listening Unix sockets), a bounded number each.

What it measures (:class:`Result`): calls by kind and outcome; idempotent calls lost
(never succeeded within their budget, retries included); ``not_retriable`` executions
run more than once; calls that outlived their deadline (+ slack); RSS and descriptor
counts of the deployer and its weavelets (baseline, peak, end); recovery times (SIGKILL
→ the group has all its replicas ready again; SIGSTOP → the first successful call that
started after the stop). Every process started is stopped by PID.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._status import STATUS, fetch

APP = Path(__file__).parent / "app.py"
DEADLINE_SLACK = 1.0  # seconds a call may exceed its deadline (proxy hop, scheduling)


@attrs.define(kw_only=True)
class Settings:
    clients: int = 8
    duration: float = 20.0  # seconds of load under chaos
    deadline: float = 2.0  # each call's deadline, seconds
    idempotent_budget: float = 15.0  # seconds an idempotent call may take, retries included
    replicas: int = 3
    kill_every: float = 4.0
    stop_for: float = 3.0
    flood_proxy: int = 200  # idle connections held on the proxy's listener
    flood_per_socket: int = 20  # ... and on each weavelet's listening socket
    seed: int = 1


@attrs.define(kw_only=True)
class Sample:
    rss_kib: int
    fds: int


@attrs.define(kw_only=True)
class Result:
    calls: dict[str, int] = attrs.field(factory=dict)  # "kind outcome" -> count
    lost_idempotent: list[str] = attrs.field(factory=list)
    run_twice: list[str] = attrs.field(factory=list)
    past_deadline: list[tuple[str, float]] = attrs.field(factory=list)
    kill_recovery: list[float] = attrs.field(factory=list)  # NaN: not recovered
    stop_recovery: list[float] = attrs.field(factory=list)
    baseline: dict[str, Sample] = attrs.field(factory=dict)  # "deployer" / "weavelets"
    peak: dict[str, Sample] = attrs.field(factory=dict)
    end: dict[str, Sample] = attrs.field(factory=dict)
    floods_held: int = 0
    deployment_alive: bool = True
    log_tail: str = ""

    def count(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1


def _sample(pids: list[int]) -> Sample:
    rss = fds = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(rss_kib=rss, fds=fds)


def _listening_unix_sockets(pids: list[int]) -> list[str]:
    """Paths of the listening Unix sockets these processes hold."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; St 01 = listening
        if len(fields) >= 8 and fields[6] in inodes and fields[5] == "01":
            paths.append(fields[7])
    return sorted(set(paths))


class Deployment:
    """``pyweaver multi deploy`` of the chaos app, in a directory of its own."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.executions = directory / "executions"
        self.executions.mkdir(parents=True, exist_ok=True)
        self.data_dir = directory / "data"
        self.log = directory / "deploy.log"
        self.config = directory / "weaver.toml"
        self.config.write_text(
            "[serviceweaver]\n"
            'name = "chaos"\n'
            f'binary = "{APP}"\n'
            f'env = ["CHAOS_DIR={self.executions}"]\n'
            "[multi]\n"
            'listeners.chaos = {address = "127.0.0.1:0"}\n'
            f"replicas = {settings.replicas}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.status_address = ""
        self.deployment_id = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Deployment]:
        env = {**os.environ, "PYWEAVER_DATA_DIR": str(self.data_dir)}
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pyweaver", "multi", "deploy", str(self.config)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            yield self
        finally:
            self._stop(self.process)

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        # Resume anything left stopped, so it can exit.
        for pid in self.weavelet_pids_now():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def weavelet_pids_now(self) -> list[int]:
        with contextlib.suppress(Exception):
            return [pid for _, pid, _ in self._replicas(self.report_now())]
        return []

    def report_now(self) -> dict[str, Any]:
        result: dict[str, Any] = anyio.run(fetch, self.status_address, self.deployment_id, STATUS)
        return result

    async def report(self) -> dict[str, Any]:
        result: dict[str, Any] = await fetch(self.status_address, self.deployment_id, STATUS)
        return result

    @staticmethod
    def _replicas(report: dict[str, Any]) -> list[tuple[str, int, str]]:
        """(group, pid, state) of every replica."""
        return [
            (group["name"], replica["pid"], replica["state"])
            for group in report["groups"]
            for replica in group["replicas"]
            if replica.get("pid")
        ]

    async def wait_ready(self, timeout: float = 60) -> str:
        """Wait until the listener has backends; returns the proxy address."""
        assert self.process is not None
        with anyio.fail_after(timeout):
            while True:
                assert self.process.poll() is None, "the deployment ended early"
                deployments = Registry(self.data_dir).list("multi")
                if deployments:
                    (deployment,) = deployments
                    self.status_address, self.deployment_id = (
                        deployment.status_address,
                        deployment.id,
                    )
                    try:
                        report = await self.report()
                    except PyWeaverError:
                        report = None
                    if report and report["listeners"] and report["listeners"][0]["backends"]:
                        return str(report["listeners"][0]["proxy"])
                await anyio.sleep(0.1)

    def counter_group(self, report: dict[str, Any]) -> dict[str, Any]:
        return next(g for g in report["groups"] if any("Counter" in c for c in g["components"]))

    def executions_run_twice(self) -> list[str]:
        seen: dict[str, int] = {}
        for path in self.executions.glob("executions-*.log"):
            for line in path.read_text().splitlines():
                seen[line] = seen.get(line, 0) + 1
        return sorted(key for key, count in seen.items() if count > 1)


class _Flood:
    """Idle connections held open (bounded count per target)."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def open(self, proxy: str, unix_paths: list[str], settings: Settings) -> None:
        host, port = proxy.rsplit(":", 1)
        targets: list[tuple[int, Any, int]] = [
            (socket.AF_INET, (host, int(port)), settings.flood_proxy)
        ]
        targets += [(socket.AF_UNIX, path, settings.flood_per_socket) for path in unix_paths]
        for family, address, count in targets:
            for _ in range(count):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.settimeout(1.0)
                try:
                    sock.connect(address)
                except OSError:
                    sock.close()
                    break  # refused or capped: that target holds no more
                self.sockets.append(sock)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


async def _load(
    proxy: str,
    settings: Settings,
    result: Result,
    end: float,
    successes: list[float],
    phase: str = "load",
) -> None:
    ids = itertools.count()

    async def one_client(number: int) -> None:
        async with httpx.AsyncClient(
            base_url=f"http://{proxy}", timeout=settings.deadline + 5
        ) as client:
            while time.monotonic() < end:
                call = next(ids)
                if call % 2:
                    await idempotent(client, call)
                else:
                    await once(client, f"{phase}-{number}-{call}")

    async def timed_get(client: httpx.AsyncClient, kind: str, path: str) -> int:
        started = time.monotonic()
        try:
            response = await client.get(f"{path}&deadline={settings.deadline}")
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        took = time.monotonic() - started
        if took > settings.deadline + DEADLINE_SLACK:
            result.past_deadline.append((f"{kind} {path}", took))
        if status == 200:
            successes.append(started)
        result.count(f"{kind} {status}")
        return status

    async def idempotent(client: httpx.AsyncClient, call: int) -> None:
        budget_end = time.monotonic() + settings.idempotent_budget
        while time.monotonic() < budget_end:
            if await timed_get(client, "add", f"/add?n={call}") == 200:
                return
            await anyio.sleep(0.05)
        result.lost_idempotent.append(f"add n={call}")

    async def once(client: httpx.AsyncClient, execution_id: str) -> None:
        await timed_get(client, "record", f"/record?id={execution_id}")

    async with anyio.create_task_group() as tasks:
        for number in range(settings.clients):
            tasks.start_soon(one_client, number)


async def _chaos(
    deployment: Deployment,
    settings: Settings,
    result: Result,
    end: float,
    successes: list[float],
    sample_peak: Any,
) -> None:
    rng = random.Random(settings.seed)
    while time.monotonic() + settings.kill_every < end:
        await anyio.sleep(settings.kill_every / 2)
        sample_peak()
        report = await deployment.report()
        pids = [r["pid"] for r in deployment.counter_group(report)["replicas"] if r.get("pid")]
        if len(pids) < 2:
            continue
        victim, sleeper = rng.sample(pids, 2)
        # SIGKILL: time until the group has all its replicas ready again, victim gone.
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        recovered = float("nan")
        with anyio.move_on_after(30):
            while True:
                await anyio.sleep(0.05)
                with contextlib.suppress(PyWeaverError):
                    group = deployment.counter_group(await deployment.report())
                    ready = [
                        r
                        for r in group["replicas"]
                        if r["state"] == "ready" and r.get("pid") not in (None, victim)
                    ]
                    if len(ready) >= settings.replicas:
                        recovered = time.monotonic() - killed_at
                        break
        result.kill_recovery.append(recovered)
        # SIGSTOP: time until a call that started after the stop succeeds.
        stopped_at = time.monotonic()
        os.kill(sleeper, signal.SIGSTOP)
        try:
            flowing = float("nan")
            stop_end = stopped_at + settings.stop_for
            while time.monotonic() < stop_end:
                later = [t for t in successes[-200:] if t > stopped_at]
                if later:
                    flowing = min(later) - stopped_at
                    break
                await anyio.sleep(0.02)
            result.stop_recovery.append(flowing)
            await anyio.sleep(max(0.0, stop_end - time.monotonic()))
        finally:
            with contextlib.suppress(OSError):
                os.kill(sleeper, signal.SIGCONT)


def run(directory: Path, settings: Settings) -> Result:
    """One chaos run; never raises for what it measures (the caller asserts)."""
    result = Result()
    deployment = Deployment(directory, settings)
    flood = _Flood()
    with deployment.running():
        proxy = anyio.run(deployment.wait_ready)
        assert deployment.process is not None
        deployer_pid = deployment.process.pid

        def groups() -> tuple[list[int], list[int]]:
            return [deployer_pid], deployment.weavelet_pids_now()

        def measure(into: dict[str, Sample]) -> None:
            deployer, weavelets = groups()
            for name, pids in (("deployer", deployer), ("weavelets", weavelets)):
                sample = _sample(pids)
                best = into.get(name)
                if best is None:
                    into[name] = sample
                else:
                    best.rss_kib = max(best.rss_kib, sample.rss_kib)
                    best.fds = max(best.fds, sample.fds)

        # Warm up (every replica has served), then the baseline.
        # (Its execution ids are its own: "warmup-...", never the load phase's.)
        anyio.run(
            _load,
            proxy,
            attrs.evolve(settings, clients=2),
            Result(),
            time.monotonic() + 2,
            [],
            "warmup",
        )
        measure(result.baseline)
        flood.open(proxy, _listening_unix_sockets(groups()[1]), settings)
        result.floods_held = len(flood.sockets)

        async def under_chaos() -> None:
            end = time.monotonic() + settings.duration
            successes: list[float] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_load, proxy, settings, result, end, successes)
                tasks.start_soon(
                    _chaos,
                    deployment,
                    settings,
                    result,
                    end,
                    successes,
                    lambda: measure(result.peak),
                )

        try:
            anyio.run(under_chaos)
            measure(result.peak)
        finally:
            flood.close()
        time.sleep(2)  # let closed connections and restarts settle
        result.deployment_alive = deployment.process.poll() is None
        if result.deployment_alive:
            measure(result.end)
        result.run_twice = deployment.executions_run_twice()
    result.log_tail = "\n".join(deployment.log.read_text(errors="replace").splitlines()[-30:])
    return result


def bounded(result: Result, *, factor: float = 3.0) -> list[str]:
    """Where memory or descriptors ended above ``factor`` times the baseline (+ a floor)."""
    problems = []
    for name, base in result.baseline.items():
        end = result.end.get(name)
        if end is None:
            problems.append(f"{name}: no end sample (deployment gone)")
            continue
        if end.rss_kib > factor * base.rss_kib + 50_000:
            problems.append(f"{name} RSS {base.rss_kib} KiB -> {end.rss_kib} KiB")
        if end.fds > factor * base.fds + 64:
            problems.append(f"{name} descriptors {base.fds} -> {end.fds}")
    return problems


def summary(result: Result) -> str:
    def figures(values: list[float]) -> str:
        if not values:
            return "none"
        shown = ", ".join(f"{v:.2f}" for v in values)
        return f"[{shown}] s"

    worst = max((t for _, t in result.past_deadline), default=0.0)
    lines = [
        "calls: " + ", ".join(f"{k}: {v}" for k, v in sorted(result.calls.items())),
        f"lost idempotent calls: {len(result.lost_idempotent)}",
        f"not_retriable executions run twice: {len(result.run_twice)}",
        f"calls past deadline + {DEADLINE_SLACK:g} s: {len(result.past_deadline)}"
        + (f" (worst {worst:.2f} s)" if result.past_deadline else ""),
        f"SIGKILL -> group ready again: {figures(result.kill_recovery)}",
        f"SIGSTOP -> calls flowing via others: {figures(result.stop_recovery)}",
        f"idle connections held: {result.floods_held}",
        f"deployment alive at the end: {result.deployment_alive}",
    ]
    for name in ("deployer", "weavelets"):
        base, peak, end = (d.get(name) for d in (result.baseline, result.peak, result.end))
        lines.append(
            f"{name}: RSS KiB {getattr(base, 'rss_kib', '-')} / {getattr(peak, 'rss_kib', '-')}"
            f" / {getattr(end, 'rss_kib', '-')}, fds {getattr(base, 'fds', '-')} /"
            f" {getattr(peak, 'fds', '-')} / {getattr(end, 'fds', '-')} (baseline / peak / end)"
        )
    return "\n".join(lines)
