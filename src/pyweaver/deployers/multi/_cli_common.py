"""What the listing commands of ``pyweaver multi`` share: fetching every live
deployment's answer, and printing JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import click

from pyweaver.deployers._registry import Deployment, Registry
from pyweaver.deployers.multi._status import (
    fetch_all,
)

__all__ = [
    "JSON_HELP",
    "RUN_DIR_PREFIX",
    "Tables",
    "fetch_deployments",
    "print_json",
    "since_to_ns",
]


JSON_HELP = "Print JSON instead of a table, for programs."


def fetch_deployments(method: bytes) -> list[tuple[Deployment, Any]]:
    return anyio.run(fetch_all, Registry(), method)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


#: The name of a multi deployer's run directory starts with this, then its pid.
RUN_DIR_PREFIX = "pyweaver-"


class Tables:
    """Prints titled tables: on a terminal boxed, fitted to its width, long values
    wrapped; otherwise (piped to grep, a file, another program) one line per row,
    columns separated by tabs, every value whole, so nothing is ever cut."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self.piped = not self.console.is_terminal
        self.first = True

    def print(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if self.piped:
            lines = [title, "\t".join(columns)]
            lines.extend("\t".join(cell.replace("\n", ",") for cell in row) for row in rows)
            click.echo("\n".join(lines if self.first else ["", *lines]))
            self.first = False
            return
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")  # wrap a long value, never cut it
        for row in rows:
            table.add_row(*row)
        self.console.print(table)


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def since_to_ns(text: str, now: float) -> int:
    """``--since``: a duration before ``now`` (``90s``, ``5m``, ``1h30m``, ``2d``) or an
    ISO 8601 / RFC 3339 timestamp (local time when it has no zone)."""
    if re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h|d))+", text):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit]
            for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ms|s|m|h|d)", text)
        )
        return int((now - seconds) * 1e9)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (90s, 5m, 1h30m, 2d) nor a timestamp "
            "(2026-11-30T08:00:00Z, or local time without a zone)",
            param_hint="'--since'",
        ) from None
    return int(moment.astimezone().timestamp() * 1e9)
