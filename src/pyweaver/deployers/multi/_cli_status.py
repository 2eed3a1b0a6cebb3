"""``pyweaver multi status``, ``metrics``, ``dashboard`` and ``purge``: the state of the
deployments that run, and clearing what stopped ones left."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import click

from pyweaver.deployers._exposition import openmetrics_text, prometheus_text
from pyweaver.deployers._registry import Registry, pid_alive
from pyweaver.deployers.multi._cli_common import (
    JSON_HELP,
    RUN_DIR_PREFIX,
    Tables,
    fetch_deployments,
    print_json,
)
from pyweaver.deployers.multi._status import (
    METRICS,
    REPLICA_METRICS,
    STATUS,
    status_json,
)

__all__ = ["dashboard", "metrics", "purge", "purge_run_dirs", "status"]


def _age(started: float) -> str:
    seconds = int(time.time() - started)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _health_text(replica: dict[str, Any]) -> str:
    health = replica.get("health") or {}
    status = replica.get("status") or ("healthy" if health.get("healthy") else "-")
    if status == "failed":
        return f"failed: {', '.join(health.get('failed') or ())}"
    if status == "starting" and health.get("starting"):
        return f"starting (init: {', '.join(health['starting'])})"
    return str(status)


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def status(as_json: bool) -> None:
    """Show the running deployments: components, replicas, pids, health, listeners."""
    results = fetch_deployments(STATUS)
    if as_json:
        print_json(status_json(results))
        return
    if not results:
        click.echo("No multi deployments are running.")
        return
    tables = Tables()
    tables.print(
        "DEPLOYMENTS",
        ("APP", "DEPLOYMENT", "AGE", "PID"),
        [(d.app, d.id, _age(d.started), str(d.pid)) for d, _ in results],
    )
    components: list[tuple[str, ...]] = []
    listeners: list[tuple[str, ...]] = []
    for deployment, report in results:
        # On a terminal the id is shortened to fit; piped, it stays whole.
        shown_id = deployment.id if tables.piped else deployment.id[:8]
        if isinstance(report, Exception):
            components.append(
                (deployment.app, shown_id, "?", "?", "?", "?", "unreachable", str(report))
            )
            continue
        for group in report["groups"]:
            components.extend(
                (
                    deployment.app,
                    shown_id,
                    group["name"],
                    "\n".join(group["components"]),
                    f"#{replica['slot'].rsplit('#', 1)[-1]} {replica['replica']}",
                    str(replica["pid"] or "-"),
                    replica["state"],
                    _health_text(replica),
                )
                for replica in group["replicas"]
            )
        listeners.extend(
            (
                deployment.app,
                shown_id,
                listener["name"],
                listener["proxy"],
                str(len(listener["backends"])),
            )
            for listener in report["listeners"]
        )
    tables.print(
        "COMPONENTS",
        ("APP", "DEPLOYMENT", "GROUP", "COMPONENTS", "REPLICA", "PID", "STATE", "HEALTH"),
        components,
    )
    tables.print("LISTENERS", ("APP", "DEPLOYMENT", "LISTENER", "ADDRESS", "BACKENDS"), listeners)


@click.command()
@click.argument("regex", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print the samples as JSON.")
@click.option("--openmetrics", is_flag=True, help="Print OpenMetrics text.")
@click.option(
    "--per-replica",
    is_flag=True,
    help="Keep each replica's samples apart (labels serviceweaver_group and "
    "serviceweaver_node, the replica id) instead of merging them.",
)
def metrics(regex: str, as_json: bool, openmetrics: bool, per_replica: bool) -> None:
    """Print the metrics of the running deployments (Prometheus text), merged across
    replicas unless --per-replica; REGEX (a Python regular expression, searched
    anywhere in the name) keeps only the metrics whose name it matches, e.g.
    'serviceweaver_method' or '^process_'.

    Every metric carries serviceweaver_app and serviceweaver_version (the deployment);
    process_* metrics (CPU seconds, memory, open fds, start time) are per replica
    always. Set [telemetry] metrics_address in weaver.toml for a scrape address.
    """
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise click.ClickException(f"bad REGEX {regex!r}: {exc}") from exc
    samples: list[dict[str, Any]] = []
    for deployment, result in fetch_deployments(REPLICA_METRICS if per_replica else METRICS):
        if isinstance(result, Exception):
            click.echo(f"# deployment {deployment.id}: {result}", err=True)
            continue
        samples.extend(s for s in result if pattern.search(s["name"]))
    if as_json:
        print_json(samples)
    elif openmetrics:
        click.echo(openmetrics_text(samples), nl=False)
    else:
        click.echo(prometheus_text(samples), nl=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
def dashboard(host: str, port: int) -> None:
    """Serve a web page showing the running deployments until Ctrl-C: components,
    replicas, health, CPU and memory, methods, the call graph, traces, error logs."""
    from pyweaver.deployers.multi._dashboard import serve_dashboard

    anyio.run(serve_dashboard, "multi", host, port)


# -- logs, purge ----------------------------------------------------------------------------


_RUN_DIR_NAME = re.compile(r"pyweaver-(\d+)-[A-Za-z0-9_]+")


def purge_run_dirs(temp_dir: Path | None = None) -> list[Path]:
    """Remove the run directories left by deployers that are gone (this user's, under
    the temp dir, named after a deployer pid that is no longer alive); those removed."""
    removed = []
    root = Path(temp_dir or tempfile.gettempdir())
    for run_dir in sorted(root.glob(RUN_DIR_PREFIX + "*")):
        name = _RUN_DIR_NAME.fullmatch(run_dir.name)
        if name is None or pid_alive(int(name.group(1))):
            continue
        try:
            if run_dir.is_symlink() or not run_dir.is_dir() or run_dir.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def purge(as_json: bool) -> None:
    """Delete the logs and registry entries of multi deployments that are not running,
    and the run directories (Unix sockets) that killed deployers left."""
    result = Registry().purge()
    run_dirs = purge_run_dirs()
    if as_json:
        print_json(
            {
                "removed": list(result.removed),
                "running": [deployment.to_json() for deployment in result.running],
                "run_dirs": [str(path) for path in run_dirs],
            }
        )
        return
    for deployment_id in result.removed:
        click.echo(f"removed {deployment_id}")
    for path in run_dirs:
        click.echo(f"removed {path}")
    for deployment in result.running:
        click.echo(
            f"kept {deployment.id} ({deployment.app}, pid {deployment.pid}): still running; "
            "stop it first",
            err=True,
        )
    if not result.removed and not result.running and not run_dirs:
        click.echo("nothing to purge")
