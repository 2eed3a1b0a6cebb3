"""The ``pyweaver`` command line.

``pyweaver check APP`` validates an app; ``pyweaver single ...`` runs it in one
process; ``pyweaver multi ...`` as many processes on this machine; ``pyweaver version``.
Each deployer contributes its own command group.
"""

from __future__ import annotations

import sys

import click

from pyweaver._errors import PyWeaverError
from pyweaver._version import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """pyweaver: write a modular monolith of components, deploy it as one process or many."""


@cli.command()
def version() -> None:
    """Print pyweaver's version."""
    click.echo(f"pyweaver {__version__} (python {sys.version.split()[0]})")


@cli.command()
@click.argument("app")
@click.option("--mermaid", is_flag=True, help="Print the component graph as a mermaid chart.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds the app's import may take (it is imported in a child process).",
)
def check(app: str, mermaid: bool, timeout: float) -> None:
    """Validate APP (a script, a module or a weaver.toml) without running it.

    Imports the app in a child process (with a timeout); checks every component, method
    signature, type, router, Ref, listener and config section; prints the component
    graph; warnings (e.g. a configured listener no component uses) go to stderr. Exits 1
    if anything is wrong (the same errors `pyweaver multi deploy` stops on).
    """
    from pyweaver._check import check_app

    try:
        report = check_app(app, timeout=timeout)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.mermaid() if mermaid and report.ok else report.text())
    if not report.ok:
        if mermaid:
            click.echo(report.text(), err=True)
        sys.exit(1)


def main() -> None:
    # Each deployer contributes its command group; imported late to keep the
    # deployers out of `import pyweaver._cli` (tests build the group themselves).
    from pyweaver.deployers.kube._cli import kube
    from pyweaver.deployers.multi._cli import multi
    from pyweaver.deployers.ray._cli import ray
    from pyweaver.deployers.single._cli import single

    cli.add_command(single)
    cli.add_command(multi)
    cli.add_command(kube)
    cli.add_command(ray)
    cli()
