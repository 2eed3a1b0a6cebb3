"""``pyweaver single ...``: run the app in one process, and look at the ones running.

``deploy`` replaces this process with the app (so signals and exit status are the
app's own). Every single-process app — ``python app.py`` as well — registers itself in
the per-user registry with a status endpoint; ``status`` and ``dashboard`` find it
there, as their ``multi`` twins find multi deployments.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._status import STATUS, fetch_all, status_json

__all__ = ["single"]


@click.group()
def single() -> None:
    """Run the app in one process."""


@single.command("deploy")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
def deploy(config: str) -> None:
    """Run the app named by CONFIG's [serviceweaver] binary/module in this process."""
    from pyweaver.contract._config import load_config

    try:
        app_config = load_config(Path(config).resolve())
        argv = app_config.app_argv()
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    env = {**os.environ, **app_config.env_vars(), "PYWEAVER_CONFIG": str(app_config.path)}
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


def _age(started: float) -> str:
    seconds = int(time.time() - started)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


@single.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Show the running single-process apps: components, health, listeners."""
    results: list[tuple[Any, Any]] = anyio.run(fetch_all, Registry(), STATUS, "single")
    if as_json:
        click.echo(json.dumps(status_json(results), indent=2, default=str))
        return
    if not results:
        click.echo("No single-process apps are running.")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="SINGLE-PROCESS APPS")
    for column in ("APP", "DEPLOYMENT", "AGE", "PID", "STATUS", "COMPONENTS", "LISTENERS"):
        table.add_column(column, overflow="fold")
    for deployment, report in results:
        if isinstance(report, Exception):
            row = ["unreachable: " + str(report), "", ""]
        else:
            (group,) = report["groups"]
            (replica,) = group["replicas"]
            built = replica["health"].get("built", [])
            listeners = [f"{entry['name']} {entry['proxy']}" for entry in report["listeners"]]
            row = [replica["status"], "\n".join(built) or "-", "\n".join(listeners) or "-"]
        table.add_row(
            deployment.app, deployment.id, _age(deployment.started), str(deployment.pid), *row
        )
    console.print(table)


@single.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
def dashboard(host: str, port: int) -> None:
    """Serve a web page showing the running single-process apps until Ctrl-C."""
    from pyweaver.deployers.multi._dashboard import serve_dashboard

    anyio.run(serve_dashboard, "single", host, port)
