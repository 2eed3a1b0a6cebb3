"""``pyweaver ray ...``: deploy an app on a Ray cluster, and look at its deployments.

``deploy`` runs in the foreground (Ctrl-C or SIGTERM stops the deployment; when main
returns, the deployment stops and ``deploy`` exits with main's status, as in ``multi``)
and prints each listener's proxy address; ``--detach`` re-runs it as a background
process with detached actors and returns once the deployment is ready; ``pyweaver ray
stop DEPLOYMENT`` stops it. ``status``, ``metrics``, ``logs`` and ``dashboard`` read the
same registry, status endpoints, log store and trace files as ``multi``: a Ray
deployment's deploying process serves the status endpoint ``multi`` serves.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import click

from pyweaver._errors import PyWeaverError
from pyweaver.contract import load_config
from pyweaver.contract._logentry import LogEntry, format_json, format_pretty
from pyweaver.deployers._exposition import prometheus_text
from pyweaver.deployers._logstore import LogStore
from pyweaver.deployers._registry import Deployment, Registry, data_dir, pid_alive
from pyweaver.deployers.multi._cli import logs as multi_logs
from pyweaver.deployers.multi._status import METRICS, STATUS, fetch, serve_status

__all__ = ["ray"]

_BACKGROUND_ENV: Final = "PYWEAVER_RAY_READY_FILE"  # set for the --detach'ed process
_DETACH_TIMEOUT: Final = 300.0
_STOP_TIMEOUT: Final = 90.0  # seconds `ray stop` waits for the deploying process to exit


@click.group()
def ray() -> None:
    """Run the app on a Ray cluster (many machines)."""


ray.add_command(multi_logs, "logs")


def _print(text: str) -> None:
    click.echo(text, err=True)


async def _deploy(
    path: Path,
    *,
    address: str | None,
    node_ip: str,
    detached: bool,
    fmt: Literal["pretty", "json"],
    ready_file: str,
    trace: float = 0.0,
) -> int:
    from pyweaver.deployers.kube._cli import describe_app
    from pyweaver.deployers.ray._config import parse_ray
    from pyweaver.deployers.ray._deployer import RayDeployment, connect, runtime_env

    try:
        config = load_config(path)
        ray_config = parse_ray(config.deployers.get("ray", {}), file=str(path))
        app = await anyio.to_thread.run_sync(describe_app, path, config)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    import ray as ray_api

    connect(address, node_ip=node_ip, runtime_env=runtime_env(config, ray_config))
    registry = Registry()
    store = LogStore(registry.logs_root)
    registry.logs_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="pyweaver-ray-"))
    deployment = RayDeployment(config, ray_config, app, detached=detached, trace_sample_ratio=trace)
    color = sys.stdout.isatty() and not ready_file

    def console(entries: Sequence[LogEntry]) -> None:
        writer.write(entries)
        for entry in entries:
            click.echo(format_json(entry) if fmt == "json" else format_pretty(entry, color=color))

    span_path = registry.logs_dir(deployment.deployment_id) / "traces.jsonl"
    stopped_by: list[int] = []
    try:
        with store.writer(deployment.deployment_id) as writer:
            deployment.log_sink = console
            span_file: Any = None

            def spans(items: Sequence[dict[str, Any]]) -> None:
                nonlocal span_file
                if span_file is None:
                    span_file = span_path.open("a", encoding="utf-8")
                for span in items:
                    span_file.write(json.dumps(span, separators=(",", ":"), default=str) + "\n")
                span_file.flush()

            deployment.span_sink = spans
            async with anyio.create_task_group() as watcher:
                waiting = anyio.CancelScope()

                async def on_signals() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for signum in signals:
                            if not stopped_by:
                                _print("pyweaver ray: stopping...")
                            stopped_by.append(signum)
                            waiting.cancel()

                watcher.start_soon(on_signals)
                try:
                    async with (
                        deployment,
                        serve_status(
                            f"unix://{socket_dir / 'status.sock'}",
                            deployment_id=deployment.deployment_id,
                            status=deployment.status,
                            metrics=deployment.metrics,
                            replica_metrics=functools.partial(deployment.metrics, per_replica=True),
                        ) as status_address,
                    ):
                        registry.register(
                            Deployment(
                                id=deployment.deployment_id,
                                app=config.name,
                                deployer="ray",
                                pid=os.getpid(),
                                started=deployment.started,
                                status_address=status_address,
                                config_path=str(path),
                            )
                        )
                        proxies = deployment.proxy_addresses()
                        _print(
                            f"pyweaver ray: app {config.name}, "
                            f"deployment {deployment.deployment_id}"
                        )
                        for name, proxy in proxies.items():
                            _print(f"pyweaver ray: listener {name} at {proxy}")
                        if ready_file:
                            await anyio.Path(ready_file).write_text(
                                json.dumps(
                                    {
                                        "deployment": deployment.deployment_id,
                                        "pid": os.getpid(),
                                        "listeners": proxies,
                                    }
                                )
                            )
                        _print("pyweaver ray: ready")
                        with waiting:
                            await deployment.stop_requested.wait()
                            if deployment.main_status is not None:
                                _print(f"pyweaver ray: main exited ({deployment.main_status})")
                            else:
                                _print("pyweaver ray: stopped through the manager")
                except PyWeaverError as exc:
                    _print(f"pyweaver ray: {exc}")
                    return 1
                finally:
                    watcher.cancel_scope.cancel()
            if span_file is not None:
                span_file.close()
    finally:
        registry.unregister(deployment.deployment_id)
        shutil.rmtree(socket_dir, ignore_errors=True)
        ray_api.shutdown()
    _print("pyweaver ray: stopped")
    if stopped_by:
        return 128 + stopped_by[0]
    return deployment.main_status or 0


def _detach(argv: list[str]) -> None:
    """Run ``deploy`` again as a background process; return once it is ready."""
    root = data_dir()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, ready = tempfile.mkstemp(prefix="ray-ready-", dir=root)
    os.close(handle)
    os.unlink(ready)
    log = root / f"ray-deploy-{int(time.time())}-{os.getpid()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyweaver", "ray", "deploy", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, _BACKGROUND_ENV: ready},
            start_new_session=True,
        )
    deadline = time.monotonic() + _DETACH_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(ready):
            time.sleep(0.1)  # written in one call; let it land
            info = json.loads(Path(ready).read_text())
            os.unlink(ready)
            click.echo(f"deployment {info['deployment']} (background pid {info['pid']})")
            for name, proxy in info["listeners"].items():
                click.echo(f"listener {name} at {proxy}")
            click.echo(f"stop it with: pyweaver ray stop {info['deployment']}")
            click.echo(f"its output: {log}")
            return
        if process.poll() is not None:
            raise click.ClickException(
                f"the deployment failed (exit {process.returncode}):\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.2)
    process.terminate()
    raise click.ClickException(f"the deployment was not ready in {_DETACH_TIMEOUT:g} s; see {log}")


@ray.command("deploy")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--address", default=None, help="The Ray cluster (HOST:PORT); default: a local Ray.")
@click.option("--node-ip-address", "node_ip", default="", help="This machine's IP for Ray.")
@click.option("--detach", is_flag=True, help="Keep running in the background (needs --address).")
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
@click.option(
    "--trace",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="Record this fraction of traces (0 to 1); spans go to the deployment's "
    "traces.jsonl next to its logs.",
)
def deploy(
    config: Path,
    *,
    address: str | None,
    node_ip: str,
    detach: bool,
    fmt: Literal["pretty", "json"],
    trace: float,
) -> None:
    """Deploy the app of CONFIG (a weaver.toml) on Ray; print each listener's address.

    In the foreground, Ctrl-C (or SIGTERM) stops the deployment; when main returns, the
    deployment stops and this command exits with main's status. With --detach it
    returns once the deployment is ready; `pyweaver ray stop DEPLOYMENT` stops it.
    """
    ready_file = os.environ.pop(_BACKGROUND_ENV, "")
    if detach and not ready_file:
        if not address:
            raise click.ClickException(
                "--detach needs --address: a local Ray ends with the command that started it"
            )
        argv = [str(config.resolve()), "--address", address, "--detach", "--format", fmt]
        argv += ["--trace", str(trace)]
        if node_ip:
            argv += ["--node-ip-address", node_ip]
        _detach(argv)
        return
    run = functools.partial(
        _deploy,
        config.resolve(),
        address=address,
        node_ip=node_ip,
        detached=detach,
        fmt=fmt,
        ready_file=ready_file,
        trace=trace,
    )
    sys.exit(anyio.run(run))


def _wait_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# -- status, metrics, stop --------------------------------------------------------------------


def _fetch_all(method: bytes) -> list[tuple[Deployment, Any]]:
    async def ask() -> list[tuple[Deployment, Any]]:
        results: list[tuple[Deployment, Any]] = []
        for deployment in Registry().list("ray"):
            try:
                answer = await fetch(deployment.status_address, deployment.id, method, timeout=15)
            except PyWeaverError as exc:
                answer = exc
            results.append((deployment, answer))
        return results

    return anyio.run(ask)


def _health(health: dict[str, Any]) -> str:
    if not health:
        return "-"
    return "healthy" if health.get("healthy") else "unhealthy"


@ray.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Show the running Ray deployments: groups, replicas, nodes, listeners."""
    results = _fetch_all(STATUS)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "deployment": d.to_json(),
                        "status": None if isinstance(r, Exception) else r,
                        "error": str(r) if isinstance(r, Exception) else "",
                    }
                    for d, r in results
                ],
                indent=2,
                default=str,
            )
        )
        return
    if not results:
        click.echo("No ray deployments are running.")
        return
    for deployment, report in results:
        click.echo(f"{deployment.app} {deployment.id} (pid {deployment.pid})")
        if isinstance(report, Exception):
            click.echo(f"  unreachable: {report}")
            continue
        for group in report["groups"]:
            click.echo(f"  group {group['name']}: {', '.join(group['components'])}")
            for replica in group["replicas"]:
                click.echo(
                    f"    {replica['slot']}\t{replica['state']}\t{replica['node_ip'] or '-'}"
                    f"\t{replica['address'] or '-'}\tpid {replica['pid'] or '-'}"
                    f"\tstarts {replica['starts']}\t{_health(replica['health'])}"
                )
        for listener in report["listeners"]:
            click.echo(
                f"  listener {listener['name']} at {listener['proxy']}"
                f" ({len(listener['backends'])} backends)"
            )


@ray.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
def dashboard(host: str, port: int) -> None:
    """Serve the dashboard (the one `pyweaver multi dashboard` serves: Ray and multi
    deployments side by side) until Ctrl-C."""
    from pyweaver.deployers.multi._dashboard import serve_dashboard

    anyio.run(serve_dashboard, "ray", host, port)


@ray.command()
@click.argument("regex", required=False, default="")
def metrics(regex: str) -> None:
    """Print the metrics of the running Ray deployments (Prometheus text)."""
    import re

    pattern = re.compile(regex)
    samples: list[dict[str, Any]] = []
    for deployment, result in _fetch_all(METRICS):
        if isinstance(result, Exception):
            click.echo(f"# deployment {deployment.id}: {result}", err=True)
            continue
        samples.extend(s for s in result if pattern.search(s["name"]))
    click.echo(prometheus_text(samples), nl=False)


@ray.command()
@click.argument("deployment")
@click.option("--address", default=None, help="The Ray cluster (HOST:PORT).")
@click.option("--node-ip-address", "node_ip", default="", help="This machine's IP for Ray.")
def stop(deployment: str, address: str | None, node_ip: str) -> None:
    """Stop DEPLOYMENT (an id or a prefix) and wait until it is gone.

    With --address: through its manager actor on that cluster (from any machine); the
    deploying process stops every replica, or, if none follows the manager any more,
    this command does. Without: a deployment deployed from this machine (foreground or
    --detach), by signalling its deploying process.
    """
    import ray as ray_api

    from pyweaver.deployers.ray._deployer import connect, stop_by_name

    local = [entry for entry in Registry().list("ray") if entry.id.startswith(deployment)]
    if not address:
        if len(local) != 1:
            what = "no" if not local else "more than one"
            raise click.ClickException(
                f"{what} running ray deployment here matches {deployment!r}; give --address"
            )
        entry = local[0]
        click.echo(f"stopping {entry.id} (pid {entry.pid})")
        os.kill(entry.pid, signal.SIGTERM)
        if not _wait_exit(entry.pid, _STOP_TIMEOUT):
            raise click.ClickException(f"pid {entry.pid} still runs after {_STOP_TIMEOUT:g} s")
        click.echo(f"stopped {entry.id}")
        return
    connect(address, node_ip=node_ip)
    try:
        stopped = stop_by_name(deployment)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        ray_api.shutdown()
    for entry in local:  # its deploying process ran here: wait until it has exited
        if entry.id == stopped and not _wait_exit(entry.pid, _STOP_TIMEOUT):
            raise click.ClickException(f"pid {entry.pid} still runs after {_STOP_TIMEOUT:g} s")
    click.echo(f"stopped {stopped}")
