"""``pyweaver multi logs``: the stored logs of every deployment, queried with CEL."""

from __future__ import annotations

import signal
import sys
import time

import anyio
import click

from pyweaver._errors import PyWeaverError
from pyweaver.contract._logentry import LogEntry, format_json, format_pretty
from pyweaver.deployers._logstore import LogQuery, LogStore
from pyweaver.deployers._logstore._query import fields_help
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._cli_common import since_to_ns

__all__ = ["logs"]


_LOGS_HELP = f"""Print the logs of multi deployments (running or not) matching QUERY, a CEL
expression (Common Expression Language, as Service Weaver's `weaver multi logs`), in time
order across deployments and replicas.

Each line shows the level and time, the deployment and replica (short ids), the
component, file:line, the message and the attributes.

\b
Fields:
{fields_help()}

\b
Examples:
  pyweaver multi logs 'level == "error" && component.contains("Cart")'
  pyweaver multi logs 'attrs["user"] == "ann"'       # entries with user=ann
  pyweaver multi logs 'severity >= 30'               # warnings and errors
  pyweaver multi logs 'msg.matches("^retry [0-9]+")' # RE2, unanchored
  pyweaver multi logs 'time > timestamp("2026-11-30T00:00:00Z")'
  pyweaver multi logs 'time > now - duration("5m")'
  pyweaver multi logs --follow 'stream == "stderr"'  # captured stderr, from now on
  pyweaver multi logs --since 1h --follow            # the last hour, then follow

\b
Operators: && || ! == != < <= > >= in, s.contains(t), s.startsWith(t),
s.endsWith(t), s.matches(re), has(attrs.k), size(s), timestamp(...), duration(...)
and the rest of CEL. An entry without an attribute the query reads (attrs["k"]) does
not match, whatever the comparison.
"""


@click.command(help=_LOGS_HELP)
@click.argument("query", required=False, default="")
@click.option(
    "--follow", "-f", is_flag=True, help="Print new entries as they are written, from now on."
)
@click.option(
    "--since",
    metavar="DURATION|TIMESTAMP",
    help="Only entries made since then (5m, 1h30m, 2d, or 2026-11-30T08:00:00Z); with "
    "--follow, those first, then new entries.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json"]),
    default="pretty",
    help="How to print entries.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def logs(query: str, follow: bool, since: str | None, fmt: str, as_json: bool) -> None:
    if as_json:
        fmt = "json"
    since_ns = since_to_ns(since, time.time()) if since else None
    try:
        parsed = LogQuery.parse(query) if query.strip() else None
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    store = LogStore(Registry().logs_root)
    color = sys.stdout.isatty()

    def show(entry: LogEntry) -> None:
        if fmt == "json":
            click.echo(format_json(entry))
        else:
            click.echo(format_pretty(entry, color=color, deployment=True))

    if not follow:
        for entry in store.read(parsed, since_ns=since_ns):
            show(entry)
        return

    async def tail() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        stop.set()
                        return

            tasks.start_soon(on_signals)
            entries = store.follow(
                parsed, stop=stop, from_start=since_ns is not None, since_ns=since_ns
            )
            async for entry in entries:
                show(entry)
            tasks.cancel_scope.cancel()

    anyio.run(tail)


# -- traces -------------------------------------------------------------------------------
