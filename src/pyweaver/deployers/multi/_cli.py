"""``pyweaver multi ...``: deploy an app as many processes on this machine, and look at
the deployments that run.

``deploy`` runs in the foreground: it prints the app's logs, and stops every process
it started on Ctrl-C or SIGTERM, or when main returns (exiting with main's status).
``status``, ``logs``, ``metrics``, ``traces`` and ``purge`` find deployments through the per-user
registry (``$PYWEAVER_DATA_DIR``, else the platform's user data dir). Each of them
takes ``--json``; piped, ``status`` prints whole values, one row per line.

This module holds the group and ``deploy``; the other commands live in ``_cli_status``
(status, metrics, dashboard, purge), ``_cli_logs``, ``_cli_traces`` and ``_cli_profile``,
with what they share in ``_cli_common``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Literal

import anyio
import attrs
import click

from pyweaver._errors import PyWeaverError
from pyweaver._net import format_address
from pyweaver.contract._config import TelemetryConfig
from pyweaver.contract._logentry import LogEntry, format_json, format_pretty
from pyweaver.deployers._logstore import LogStore, LogWriter
from pyweaver.deployers._otlp import OtlpExport, otlp_traces_endpoint, sampler_ratio_from_env
from pyweaver.deployers._registry import Deployment, Registry
from pyweaver.deployers._spanstore import SpanWriter
from pyweaver.deployers.multi._cli_common import RUN_DIR_PREFIX
from pyweaver.deployers.multi._cli_logs import logs
from pyweaver.deployers.multi._cli_profile import profile
from pyweaver.deployers.multi._cli_status import dashboard, metrics, purge, purge_run_dirs, status
from pyweaver.deployers.multi._cli_traces import traces
from pyweaver.deployers.multi._deployer import DeploymentFailed, MultiDeployer
from pyweaver.deployers.multi._status import (
    serve_status,
)
from pyweaver.deployers.multi._telemetry import fan_out, scrape_app
from pyweaver.envelope import Child, ProcessChild

__all__ = ["logs", "multi", "purge_run_dirs"]


@click.group()
def multi() -> None:
    """Run the app as many processes on this machine."""


# -- deploy -------------------------------------------------------------------------------


class _Console:
    """Writes every log entry to the deployment's log store and to the terminal."""

    def __init__(self, writer: LogWriter, fmt: Literal["pretty", "json"], color: bool) -> None:
        self.writer = writer
        self.fmt = fmt
        self.color = color

    def __call__(self, entries: Sequence[LogEntry]) -> None:
        self.writer.write(entries)
        for entry in entries:
            text = (
                format_json(entry) if self.fmt == "json" else format_pretty(entry, color=self.color)
            )
            click.echo(text, err=False)


def _sample_ratio(
    trace: float | None, telemetry: TelemetryConfig, environ: Mapping[str, str]
) -> float:
    """The fraction of root traces recorded: ``--trace``, else ``[telemetry]``'s
    ``sample_ratio``, else ``OTEL_TRACES_SAMPLER``/``_ARG``, else 1 when
    ``sample_rate`` is given, else 0 (tracing off)."""
    if trace is not None:
        return trace
    if telemetry.sample_ratio is not None:
        return telemetry.sample_ratio
    from_env = sampler_ratio_from_env(environ)
    if from_env is not None:
        return from_env
    return telemetry.effective_ratio()


async def _deploy(
    path: Path, config_file: str, fmt: Literal["pretty", "json"], trace: float | None = None
) -> int:
    from pyweaver.contract._appfacts import check_deployment
    from pyweaver.contract._config import load_config

    # Every config error is found here, before anything starts: the app is imported in
    # a child process and weaver.toml checked against it (as `pyweaver check` does).
    try:
        config = load_config(str(path))
        argv = config.app_argv()
        ratio = _sample_ratio(trace, config.telemetry, os.environ)
        checked = await anyio.to_thread.run_sync(check_deployment, config)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    # The weavelets read sample_rate from the config they are given; the ratio
    # travels as the deployer's trace_sample_ratio (0: tracing off).
    config = attrs.evolve(config, telemetry=attrs.evolve(config.telemetry, sample_ratio=ratio))
    otlp_endpoint = otlp_traces_endpoint(config.telemetry.otlp_endpoint, os.environ)
    if otlp_endpoint and ratio == 0:
        click.echo(
            f"warning: OTLP export to {otlp_endpoint} is set up but tracing is off: "
            "give --trace, [telemetry] sample_ratio or sample_rate",
            err=True,
        )
    metrics_socket = None
    if config.telemetry.metrics_address:
        from pyweaver._net import bind_socket

        try:
            metrics_socket = bind_socket(config.telemetry.metrics_address, what="metrics")
        except OSError as exc:
            raise click.ClickException(f"[telemetry] metrics_address: {exc.strerror}") from exc
    base = path.parent
    env = {**os.environ, **config.env_vars()}
    env.pop("PYWEAVER_CONFIG", None)

    def child(group: str, run_main: bool) -> Child:
        return ProcessChild(argv, env=env, cwd=str(base))

    registry = Registry()
    socket_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-"))
    deployer: MultiDeployer | None = None
    otlp: OtlpExport | None = None
    try:
        deployer = MultiDeployer(
            config,
            child_factory=child,
            socket_dir=socket_dir,
            sys_path=[str(base)],
            trace_sample_ratio=ratio,
            components=list(checked.facts.components),
            edges=checked.facts.edges,
        )
        store = LogStore(registry.logs_root)
        registry.logs_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if otlp_endpoint:
            try:
                otlp = OtlpExport(
                    otlp_endpoint, service_name=os.environ.get("OTEL_SERVICE_NAME", "")
                )
            except PyWeaverError as exc:
                raise click.ClickException(str(exc)) from exc
        with (
            store.writer(deployer.deployment_id) as writer,
            SpanWriter(registry.logs_dir(deployer.deployment_id)) as spans,
        ):
            deployer.span_sink = fan_out(spans, otlp)
            deployer.log_sink = _Console(writer, fmt, color=sys.stdout.isatty())
            lines = [
                f"app        : {config.name}",
                f"deployment : {deployer.deployment_id}",
                f"tracing    : {_tracing_text(ratio, config.telemetry.sample_rate)}",
            ]
            if otlp_endpoint:
                lines.append(f"otlp       : {otlp_endpoint}")
            if metrics_socket is not None:
                host, port = metrics_socket.getsockname()[:2]
                lines.append(f"metrics    : http://{format_address(host, port)}/metrics")
            width = max(54, *(len(line) + 2 for line in lines))
            click.echo(
                "\n".join(
                    [
                        f"╭{'─' * width}╮",
                        *(f"│ {line:<{width - 1}}│" for line in lines),
                        f"╰{'─' * width}╯",
                    ]
                ),
                err=True,
            )
            return await _run_deployment(deployer, registry, path, metrics_socket)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        if metrics_socket is not None:
            metrics_socket.close()
        if otlp is not None:
            await anyio.to_thread.run_sync(otlp.close)  # flushes queued spans
        if deployer is not None:
            registry.unregister(deployer.deployment_id)


def _tracing_text(ratio: float, rate: float | None) -> str:
    if ratio <= 0:
        return "off (--trace 1 records every trace)"
    text = "every trace" if ratio >= 1 else f"{ratio:g} of traces"
    if rate is not None:
        text += f", at most {rate:g}/s per process"
    return text


async def _run_deployment(
    deployer: MultiDeployer,
    registry: Registry,
    path: Path,
    metrics_socket: socket.socket | None = None,
) -> int:
    status = 0
    stop_signal: list[int] = []
    # The signal receiver outlives the deployment, so a second Ctrl-C while it stops is
    # absorbed. A signal does not cancel the deployment from outside (its processes are
    # stopped in order by leaving the deployer's block); it ends the wait for main.
    async with anyio.create_task_group() as watcher:
        waiting = anyio.CancelScope()

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if not stop_signal:
                        click.echo("pyweaver multi: stopping...", err=True)
                    stop_signal.append(signum)
                    waiting.cancel()

        watcher.start_soon(on_signals)
        if metrics_socket is not None:
            from pyweaver._net import serve_asgi_socket

            watcher.start_soon(serve_asgi_socket, metrics_socket, scrape_app(deployer.metrics))
        async with (
            deployer,
            serve_status(
                f"unix://{deployer.socket_dir / 'status.sock'}",
                deployment_id=deployer.deployment_id,
                status=deployer.status,
                metrics=deployer.metrics,
                replica_metrics=partial(deployer.metrics, per_replica=True),
            ) as status_address,
        ):
            registry.register(
                Deployment(
                    id=deployer.deployment_id,
                    app=deployer.config.name,
                    deployer="multi",
                    pid=os.getpid(),
                    started=deployer.started,
                    status_address=status_address,
                    config_path=str(path),
                )
            )
            with waiting:
                try:
                    await deployer.start_main()
                    status = await deployer.wait()
                except DeploymentFailed as exc:
                    click.echo(f"pyweaver multi: {exc}", err=True)
                    status = 1
        watcher.cancel_scope.cancel()
    if stop_signal:
        click.echo("pyweaver multi: stopped", err=True)
        return 128 + stop_signal[0]
    if status < 0:  # main was killed by a signal
        return 128 - status
    return status


@multi.command("deploy")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json"]),
    default="pretty",
    help="How to print log entries.",
)
@click.option(
    "--trace",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="RATIO",
    help="Record this fraction of new traces (0 to 1; 1: every HTTP request and every "
    "call under it), overriding [telemetry] sample_ratio. A trace is sampled where it "
    "starts and recorded whole, across processes. Default: [telemetry], else "
    "OTEL_TRACES_SAMPLER, else off. See `pyweaver multi traces`.",
)
def deploy(config: str, fmt: Literal["pretty", "json"], trace: float | None) -> None:
    """Deploy the app of CONFIG (a weaver.toml) as many processes, in the foreground.

    Ctrl-C (or SIGTERM) stops every process; when main returns, the deployment stops
    and this command exits with main's status.
    """
    sys.exit(anyio.run(_deploy, Path(config).resolve(), config, fmt, trace))


# -- status, metrics ------------------------------------------------------------------------


for _command in (status, logs, metrics, traces, profile, dashboard, purge):
    multi.add_command(_command)
