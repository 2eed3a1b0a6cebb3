"""``pyweaver kube deploy weaver.toml [-o DIR]``: Kubernetes manifests for ``kubectl apply``.

Nothing here talks to a cluster. ``deploy`` imports the app in a subprocess (as every
deployer does, with a timeout) to learn its components and listeners, computes
the deployment's plan, checks the objects with pyweaver's own lint, and writes
``kube.yaml`` and ``Dockerfile`` into DIR; with ``[kube] mtls`` (the default) also
``secret.yaml`` (mode 0600): each group's TLS Secret, from a CA made for this run.
"""

from __future__ import annotations

from pathlib import Path

import click

from pyweaver._errors import ConfigError, PyWeaverError
from pyweaver.contract import AppConfig, load_config
from pyweaver.contract._appfacts import check_deployment
from pyweaver.contract._tls import write_private
from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers.kube._config import parse_kube
from pyweaver.deployers.kube._lint import lint
from pyweaver.deployers.kube._manifests import (
    dockerfile,
    manifests,
    render_secrets_yaml,
    render_yaml,
    secrets,
)
from pyweaver.deployers.kube._plan import AppInfo, Plan, plan

__all__ = ["describe_app", "kube", "write_deployment"]


def describe_app(path: Path, config: AppConfig) -> AppInfo:
    """What the app of weaver.toml ``path`` declares, learned the way every deployer
    does (:func:`pyweaver.contract._appfacts.check_deployment`: the app imported in a
    subprocess with a timeout, and the config checked against it); warnings go to
    stderr."""
    checked = check_deployment(config)
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    facts = checked.facts
    return AppInfo(
        components=sorted(facts.components),
        routed=sorted(facts.routed),
        listeners=dict(sorted(facts.listener_fields.items())),
        edges=sorted([list(edge) for edge in facts.edges]),
    )


def write_deployment(
    path: Path, app: AppInfo, out: Path | None, version: str = ""
) -> tuple[Plan, Path]:
    """Plan, lint and write the deployment of weaver.toml ``path``; (plan, directory)."""
    config = load_config(path)
    text = path.read_text(encoding="utf-8")
    kube_config = parse_kube(config.deployers.get("kube", {}), file=str(path))
    deployment = plan(config, text, kube_config, app, version=version)
    objects = manifests(deployment)
    tls = (
        secrets(deployment, DeploymentCA.create(deployment.deployment_id))
        if deployment.mtls
        else []
    )
    problems = lint([*objects, *tls])
    if problems:
        raise ConfigError("the manifests would be refused:\n" + "\n".join(problems))
    directory = (
        out if out is not None else Path(f"pyweaver-kube-{deployment.app}-{deployment.version}")
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kube.yaml").write_text(render_yaml(deployment, objects), encoding="utf-8")
    (directory / "Dockerfile").write_text(dockerfile(deployment), encoding="utf-8")
    if tls:
        secret_text = render_secrets_yaml(deployment, tls)
        write_private(directory / "secret.yaml", secret_text.encode("utf-8"))
    elif (directory / "secret.yaml").exists():
        (directory / "secret.yaml").unlink()  # an earlier run's, with mtls on
    return deployment, directory


@click.group()
def kube() -> None:
    """Deploy the app on Kubernetes (writes manifests; `kubectl apply` them)."""


@kube.command("deploy")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write kube.yaml and Dockerfile to (default: ./pyweaver-kube-APP-VERSION).",
)
@click.option("--version-id", default="", help="Use this version instead of the content hash.")
def deploy(config: Path, output: Path | None, version_id: str) -> None:
    """Write Kubernetes manifests and a Dockerfile for the app of CONFIG (a weaver.toml)."""
    path = config.resolve()
    try:
        app = describe_app(path, load_config(path))
        deployment, directory = write_deployment(path, app, output, version_id)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    groups = ", ".join(
        f"{g.name} ({g.settings.replicas}-{g.settings.max_replicas} pods)"
        for g in deployment.groups
    )
    click.echo(f"app {deployment.app}, version {deployment.version}: groups {groups}")
    click.echo(f"wrote {directory / 'kube.yaml'}")
    if deployment.mtls:
        click.echo(f"wrote {directory / 'secret.yaml'} (private keys: keep it private)")
    click.echo(f"wrote {directory / 'Dockerfile'}")
    apply = f"-f {directory / 'secret.yaml'} " if deployment.mtls else ""
    click.echo(
        f"next: docker build -f {directory / 'Dockerfile'} -t {deployment.image} {path.parent}"
        f" && docker push {deployment.image} && kubectl apply {apply}-f {directory / 'kube.yaml'}"
    )
