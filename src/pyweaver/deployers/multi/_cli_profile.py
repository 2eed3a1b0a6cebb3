"""``pyweaver multi profile``: sample every replica of a group with py-spy into one
speedscope file."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import anyio
import click

from pyweaver._errors import PyWeaverError
from pyweaver.deployers.multi._cli_common import fetch_deployments
from pyweaver.deployers.multi._status import (
    STATUS,
)

__all__ = ["profile"]


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 10s, 1m or 500ms")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


@click.command()
@click.argument("group", required=False)
@click.option(
    "--duration",
    default="10s",
    show_default=True,
    help="How long to sample (10s, 1m; whole seconds, rounded up).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the profile [default: profile-DEPLOYMENT-GROUP.speedscope.json].",
)
@click.option(
    "--deployment",
    "deployment_id",
    help="The deployment (an id or its prefix); needed when several are running.",
)
@click.option("--rate", default=100, show_default=True, help="Samples per second per replica.")
@click.option("--idle", is_flag=True, help="Also record threads that are idle (waiting).")
def profile(
    group: str | None,
    *,
    duration: str,
    output: str | None,
    deployment_id: str | None,
    rate: int,
    idle: bool,
) -> None:
    """Sample every replica of GROUP (a colocation group, or a component in it; default:
    every replica of the deployment) at once with py-spy, and write one speedscope
    profile with a profile per replica (open it at https://www.speedscope.app).

    py-spy reads the processes from outside: it needs `pip install 'pyweaver[profile]'`
    and the right to trace them (root, or kernel.yama.ptrace_scope=0).
    """
    from pyweaver.deployers.multi._profile import profile_targets, targets_from_status

    seconds = _seconds(duration)
    results = fetch_deployments(STATUS)
    if deployment_id is not None:
        results = [(d, r) for d, r in results if d.id.startswith(deployment_id)]
    if not results:
        raise click.ClickException(
            "no running multi deployment" + (f" matches {deployment_id!r}" if deployment_id else "")
        )
    if len(results) > 1:
        ids = ", ".join(d.id[:8] for d, _ in results)
        raise click.ClickException(
            f"{len(results)} deployments are running ({ids}): choose one with --deployment"
        )
    deployment, report = results[0]
    if isinstance(report, Exception):
        raise click.ClickException(f"deployment {deployment.id} does not answer: {report}")
    try:
        targets = targets_from_status(report, group)
        click.echo(
            f"profiling {len(targets)} replica(s) of {deployment.app} "
            f"{deployment.id[:8]} for {max(1, math.ceil(seconds))} s...",
            err=True,
        )
        merged = anyio.run(lambda: profile_targets(targets, seconds, rate=rate, idle=idle))
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", group or "all")
    path = Path(output or f"profile-{deployment.id[:8]}-{name}.speedscope.json")
    path.write_text(json.dumps(merged, separators=(",", ":")))
    samples = sum(len(p.get("samples", [])) for p in merged["profiles"])
    click.echo(
        f"wrote {path} ({len(merged['profiles'])} profiles, {samples} samples); "
        "open it at https://www.speedscope.app"
    )


# A deployment's run directory (its Unix sockets) is ``<tmp>/pyweaver-<deployer
# pid>-<random>``; a deployer that was SIGKILLed leaves it behind.
