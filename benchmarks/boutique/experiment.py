"""The HotOS'23 experiment in Python: the Online Boutique in three layouts, same load.

``python benchmarks/run.py boutique`` (or this file directly). Layouts:

    colocated  pyweaver multi deploy colocated.toml: every component, main included, in
               one process (the paper's "prototype, merged")
    split      pyweaver multi deploy weaver.toml: one process per component (+ main), one
               replica each (the paper's "prototype, split")
    grpc       grpc_arm.py: 10 gRPC services + the frontend, 11 processes, grpc.aio and
               protobuf, the same business logic and pages (the paper's baseline)

The three are deployed side by side on 127.0.0.1 (an idle deployment costs next to
nothing). The open-loop load generator (examples/onlineboutique/loadgen.py: the 2023
locustfile mix, Poisson arrivals) offers each rate, lowest first, to each layout in turn
(the order rotating from rate to rate, so that noise from other work on the machine
weighs on all alike), until a layout stops keeping up. Per rate: median
and p99 latency of a task (Locust's view: a followed redirect is part of its request),
errors, and the CPU seconds per task of every process of the deployment (deployer and
all its children, from /proc; the load generator excluded). A rate is *sustained* when
at most 1% of its tasks fail or are dropped and p99 stays under 1 s; a window that was
not, while other processes on the machine used more than half a core, is measured once
more (the machine is shared; each row shows those others' cores).

Then the ratios at the highest rate every layout sustained, beside the paper's, and a
py-spy profile of the slowest layout's busiest process.

Defaults take a few minutes on 2 cores; ``--long`` uses more rates and longer windows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLE = ROOT / "examples" / "onlineboutique"
sys.path.insert(0, str(EXAMPLE))

import loadgen  # noqa: E402

PYTHON = sys.executable
LAYOUTS = ["colocated", "split", "grpc"]
DEFAULT_RATES = [10.0, 20.0, 40.0, 60.0, 80.0, 120.0, 160.0, 240.0]
LONG_RATES = [
    10.0,
    20.0,
    30.0,
    40.0,
    60.0,
    80.0,
    100.0,
    120.0,
    160.0,
    200.0,
    240.0,
    320.0,
    400.0,
    480.0,
]
MAX_FAILED = 0.01
MAX_P99_MS = 1000.0
GRACE_S = 20.0
# The paper's Table 2 and slides: gRPC baseline, split, merged (10,000 QPS on GKE, Go).
PAPER = {
    "grpc": {"p50_ms": 5.47, "p99_ms": 18.87, "cores": 78.0},
    "split": {"p50_ms": 2.66, "p99_ms": 9.24, "cores": 28.0},
    "colocated": {"p50_ms": 0.38, "p99_ms": 2.47, "cores": 9.0},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, flush=True)


def start_time(pid: int) -> str | None:
    """When ``pid`` started (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Deployment:
    """One layout of the store, started as a process tree and stopped by PID."""

    def __init__(self, layout: str, tmp: Path) -> None:
        self.layout = layout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{layout}.log"
        if layout == "grpc":
            argv = [
                PYTHON,
                str(HERE / "grpc_arm.py"),
                "deploy",
                "--port",
                str(self.port),
                "--build",
                str(tmp / "grpc-build"),
            ]
        else:
            source = EXAMPLE / ("colocated.toml" if layout == "colocated" else "weaver.toml")
            text = source.read_text().replace(
                'binary = "app.py"', f'binary = "{EXAMPLE / "app.py"}"'
            )
            text = text.replace("localhost:12345", f"127.0.0.1:{self.port}")
            config = tmp / f"{layout}.toml"
            config.write_text(text)
            argv = [PYTHON, "-m", "pyweaver", "multi", "deploy", str(config)]
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Deployment:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ROOT),
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.layout} exited early: {self.log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=10) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"{self.layout} did not answer in 120 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        family = {pid: start_time(pid) for pid in loadgen.process_tree(self.proc.pid)[1:]}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid, started in family.items():  # anything the deployer left behind
            if started is None or start_time(pid) != started:
                continue  # gone, or the PID was reused by another process
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


QUIET_CORES = 0.3
NOISY_CORES = 0.5  # a window that failed while others used more than this is repeated once


class Quiet:
    """Waits (bounded) for the machine to be quiet before a measurement: on a shared
    machine, other people's work steals the cores the store needs."""

    def __init__(self, per_wait: float, budget: float) -> None:
        self.per_wait, self.budget, self.waited = per_wait, budget, 0.0

    def wait(self, deployments: list[Deployment]) -> float:
        """Wait until the machine (minus ``deployments``) uses < QUIET_CORES, or the time
        allowed is up; return the last sample's foreign cores."""
        if self.per_wait <= 0:
            return 0.0
        started = time.monotonic()
        foreign = 0.0
        while True:
            mine = [pid for d in deployments for pid in loadgen.process_tree(d.pid)]
            busy0, own0 = loadgen.machine_busy_seconds(), loadgen.cpu_seconds(mine)
            time.sleep(0.5)
            busy1, own1 = loadgen.machine_busy_seconds(), loadgen.cpu_seconds(mine)
            ours = sum(own1.values()) - sum(own0.values())
            foreign = max(0.0, (busy1 - busy0 - ours) / 0.5)
            spent = time.monotonic() - started
            if (
                foreign < QUIET_CORES
                or spent >= self.per_wait
                or self.waited + spent >= self.budget
            ):
                self.waited += spent
                return foreign


def warm(url: str, seconds: float) -> None:
    """Drive every page once or more so lazily started components are up."""
    anyio.run(lambda: loadgen.run_load(url, rate=10, duration=seconds, warmup=0.0, seed=99))


def measure(deployment: Deployment, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    report = anyio.run(
        lambda: loadgen.run_load(
            deployment.url, rate=rate, duration=duration, warmup=warmup, pid=deployment.pid
        )
    )
    row = report.summary()
    failed = (row["errors"] + row["dropped"]) / max(1, row["offered"])
    row["sustained"] = failed <= MAX_FAILED and row["p99_ms"] <= MAX_P99_MS
    row["layout"] = deployment.layout
    row["processes"] = len(loadgen.process_tree(deployment.pid))
    return row


def log_row(row: dict[str, Any]) -> None:
    log(
        f"{row['layout']:>9} {row['rate']:>6.0f}/s: p50 {row['p50_ms']:8.2f} ms  "
        f"p99 {row['p99_ms']:8.2f} ms  errors {row['errors']}+{row['dropped']}  "
        f"cores {row['cores']}  CPU {row['cpu_ms_per_task']} ms/task  "
        f"(load generator {row['loadgen_cores']}, others {row['foreign_cores']} cores)  "
        f"{'ok' if row['sustained'] else 'NOT sustained'}"
    )


def run_interleaved(
    layouts: list[str], rates: list[float], duration: float, warmup: float, tmp: Path, quiet: Quiet
) -> list[dict[str, Any]]:
    """Every layout deployed at once (idle ones cost next to nothing); each rate is offered
    to each layout in turn, the order rotating from rate to rate, so that whatever else
    the machine is doing weighs on every layout alike. A layout that did not sustain a
    rate is not offered the next ones."""
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        deployments = {layout: stack.enter_context(Deployment(layout, tmp)) for layout in layouts}
        for layout, deployment in deployments.items():
            warm(deployment.url, 3.0)
            processes = len(loadgen.process_tree(deployment.pid))
            log(f"{layout}: {processes} processes, {deployment.url}")
        active = list(layouts)
        for index, rate in enumerate(rates):
            shift = index % len(active)
            for layout in active[shift:] + active[:shift]:
                quiet.wait(list(deployments.values()))
                row = measure(deployments[layout], rate, duration, warmup)
                log_row(row)
                if not row["sustained"] and row["foreign_cores"] > NOISY_CORES:
                    # Others took the cores this window needed: measure once more.
                    log(f"{layout}: other processes used {row['foreign_cores']} cores; again")
                    quiet.wait(list(deployments.values()))
                    row = measure(deployments[layout], rate, duration, warmup)
                    row["repeated"] = True
                    log_row(row)
                rows.append(row)
            active = [
                layout
                for layout in active
                if any(r["layout"] == layout and r["rate"] == rate and r["sustained"] for r in rows)
            ]
            if not active:
                break
    order = {layout: i for i, layout in enumerate(LAYOUTS)}
    return sorted(rows, key=lambda r: (order[r["layout"]], r["rate"]))


# ------------------------------------------------------------------ profile


def profile(layout: str, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """py-spy on the busiest process of ``layout`` while it serves ``rate`` tasks/s."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out = tmp / f"profile-{layout}.txt"
    with Deployment(layout, tmp) as deployment:
        warm(deployment.url, 2.0)
        result: dict[str, Any] = {}
        load = threading.Thread(
            target=lambda: result.update(
                report=anyio.run(
                    lambda: loadgen.run_load(
                        deployment.url, rate=rate, duration=seconds + 3, warmup=0.0
                    )
                ).summary()
            )
        )
        load.start()
        try:
            time.sleep(1.5)
            before = loadgen.cpu_seconds(loadgen.process_tree(deployment.pid))
            time.sleep(1.5)
            after = loadgen.cpu_seconds(loadgen.process_tree(deployment.pid))
            hot = max(after, key=lambda p: after[p] - before.get(p, 0.0))
            name = loadgen.process_name(hot)
            spied = subprocess.run(
                [
                    spy,
                    "record",
                    "--pid",
                    str(hot),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
        finally:
            load.join()
    if spied.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {spied.stderr.strip()[-500:]}", "process": name}
    return {"process": name, **summarize_stacks(out.read_text())}


CATEGORIES = [
    ("jinja2 page rendering", r"jinja2|templates/|\.html"),
    ("HTTP server (hypercorn, h11)", r"hypercorn|h11|wsproto"),
    (
        "pyweaver call protocol and codec",
        r"pyweaver/(call|_codec|_automarshal|_stub|_remote)|cbor2|cattrs",
    ),
    ("pyweaver runtime (stubs, metrics, tracing, logging)", r"pyweaver/|opentelemetry|prometheus"),
    ("gRPC and protobuf", r"grpc|protobuf|_pb2"),
    ("boutique business logic and frontend", r"boutique/"),
    ("asyncio event loop, sockets", r"asyncio|selectors|socket|ssl\.py"),
    ("attrs, uuid, random, stdlib", r"attr|uuid|random|json|http/cookies|urllib"),
]


IDLE = re.compile(r"^(EpollSelector\.select|select) \(selectors\.py|^wait \(threading\.py")


def summarize_stacks(raw: str) -> dict[str, Any]:
    """Collapsed stacks (``a;b;c N`` lines) -> leaf functions and categories by share.

    Samples sitting in the event loop's ``epoll`` wait are the process waiting for I/O
    (py-spy cannot always tell that from work): they are counted apart as idle, and the
    shares are of the busy samples."""
    leaves: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    busy = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        if IDLE.search(leaf):
            idle += count
            continue
        busy += count
        leaves[leaf] += count
        # Charge the sample to the category of the innermost frame that has one.
        for frame in reversed(frames):
            found = next((c for c, pattern in CATEGORIES if re.search(pattern, frame)), None)
            if found:
                categories[found] += count
                break
        else:
            categories["other"] += count
    if not busy:
        return {"samples": 0, "idle_samples": idle, "leaves": [], "categories": []}
    return {
        "samples": busy,
        "idle_samples": idle,
        "leaves": [(leaf, round(100 * n / busy, 1)) for leaf, n in leaves.most_common(15)],
        "categories": [(c, round(100 * n / busy, 1)) for c, n in categories.most_common()],
    }


# ------------------------------------------------------------------ report


def common_rate(rows: list[dict[str, Any]], layouts: list[str]) -> float | None:
    """The highest rate every one of ``layouts`` sustained."""
    rates = [
        rate
        for rate in {row["rate"] for row in rows}
        if all(
            any(r["layout"] == layout and r["rate"] == rate and r["sustained"] for r in rows)
            for layout in layouts
        )
    ]
    return max(rates, default=None)


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def report(rows: list[dict[str, Any]], prof: dict[str, Any] | None, slowest: str | None) -> str:
    lines = [
        "",
        "Online Boutique: three layouts, same store, same load (open loop, 2023 locustfile mix)",
        "",
    ]
    lines.append(
        f"{'layout':<10} {'procs':>5} {'rate/s':>7} {'done/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'cores':>6} {'CPU ms/task':>11} {'loadgen':>7} {'others':>6}  sustained"
    )
    lines.extend(
        f"{row['layout']:<10} {row['processes']:>5} {row['rate']:>7.0f} {row['achieved_rate']:>7.1f} "
        f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors'] + row['dropped']:>7} "
        f"{row['cores'] or 0:>6.2f} {row['cpu_ms_per_task'] or 0:>11.2f} {row['loadgen_cores']:>7.2f} "
        f"{row['foreign_cores']:>6.2f}  {'yes' if row['sustained'] else 'no'}"
        for row in rows
    )
    best = {
        layout: max(
            (r["rate"] for r in rows if r["layout"] == layout and r["sustained"]), default=None
        )
        for layout in LAYOUTS
    }
    lines += [
        "",
        "Highest sustained rate (tasks/s): "
        + ", ".join(
            f"{layout} {best[layout]:.0f}" if best[layout] else f"{layout} none"
            for layout in LAYOUTS
        ),
    ]
    rate = common_rate(rows, LAYOUTS)
    if rate is not None:
        at = {row["layout"]: row for row in rows if row["rate"] == rate}
        lines += [
            "",
            f"At {rate:.0f} tasks/s, the highest rate every layout sustained "
            "(paper: Go on GKE at 10,000 QPS):",
        ]
        lines.append(
            f"{'':<22} {'p50 latency':>13} {'(paper)':>9} {'p99 latency':>13} {'(paper)':>9} "
            f"{'cores':>9} {'(paper)':>9}"
        )
        for name, fast in (("colocated vs gRPC", "colocated"), ("split vs gRPC", "split")):
            g, f = at["grpc"], at[fast]
            lines.append(
                f"{name:<22} {ratio(g['p50_ms'], f['p50_ms']):>13} {ratio(PAPER['grpc']['p50_ms'], PAPER[fast]['p50_ms']):>9} "
                f"{ratio(g['p99_ms'], f['p99_ms']):>13} {ratio(PAPER['grpc']['p99_ms'], PAPER[fast]['p99_ms']):>9} "
                f"{ratio(g['cores'], f['cores']):>9} {ratio(PAPER['grpc']['cores'], PAPER[fast]['cores']):>9}"
            )
        lines.append(
            "(ratios are gRPC / pyweaver: above 1x means pyweaver is faster or cheaper; "
            "the paper's text rounds its ratios to 15x latency, 9x cores and 2.1x, 2.8x)"
        )
    if prof is not None:
        lines += [
            "",
            f"Profile of the slowest layout ({slowest}), busiest process: {prof.get('process', '?')}",
        ]
        if "error" in prof:
            lines.append(f"  unavailable: {prof['error']}")
        else:
            lines.append(
                f"  {prof['samples']} busy samples (+{prof['idle_samples']} waiting in epoll); "
                "where the busy time goes (innermost recognised frame):"
            )
            lines += [f"  {share:5.1f}%  {category}" for category, share in prof["categories"]]
            lines.append("  hottest functions (self time):")
            lines += [f"  {share:5.1f}%  {leaf[:110]}" for leaf, share in prof["leaves"][:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run.py boutique", description="The HotOS'23 experiment on the Python Online Boutique."
    )
    parser.add_argument(
        "--long", action="store_true", help="more rates, 20 s windows (about 30 min)"
    )
    parser.add_argument("--rates", help="comma-separated tasks/s to offer, lowest first")
    parser.add_argument(
        "--duration", type=float, help="measured seconds per rate (default 6; --long 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring"
    )
    parser.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help="comma-separated subset of " + ",".join(LAYOUTS),
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=8.0, help="py-spy window (0: no profile)"
    )
    parser.add_argument("--json", type=Path, help="write the rows and the profile as JSON")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        metavar="S",
        help=f"before each rate, wait up to S s for other processes to use < {QUIET_CORES} cores "
        "(0: do not wait; at most 5x S in all)",
    )
    args = parser.parse_args(argv)
    rates = (
        [float(r) for r in args.rates.split(",")]
        if args.rates
        else LONG_RATES
        if args.long
        else DEFAULT_RATES
    )
    duration = args.duration or (20.0 if args.long else 6.0)
    layouts = [layout for layout in args.layouts.split(",") if layout]
    if any(layout not in LAYOUTS for layout in layouts):
        parser.error(f"--layouts: choose from {LAYOUTS}")
    signal.signal(
        signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum))
    )
    rows: list[dict[str, Any]] = []
    prof = slowest = None
    quiet = Quiet(args.quiet_wait, 5 * args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix="boutique-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rows = run_interleaved(layouts, rates, duration, args.warmup, tmp, quiet)
        if args.profile_seconds > 0 and rows:
            # The slowest layout at the highest rate every layout sustained (else the
            # lowest rate), profiled under that same load.
            rate = common_rate(rows, layouts) or min(r["rate"] for r in rows)
            at_rate = [r for r in rows if r["rate"] == rate]
            slowest = max(at_rate, key=lambda r: r["p50_ms"])["layout"]
            log(f"profiling {slowest} at {rate:.0f} tasks/s for {args.profile_seconds:.0f} s")
            prof = profile(slowest, rate, args.profile_seconds, tmp)
    print(report(rows, prof, slowest))
    print(
        f"\nWaited {quiet.waited:.0f} s in all for a quiet machine (others under {QUIET_CORES} cores)."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "profile": prof,
                    "slowest": slowest,
                    "rates": rates,
                    "duration": duration,
                },
                indent=1,
            )
        )
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
