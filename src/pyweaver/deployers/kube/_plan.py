"""The plan of one Kubernetes deployment: groups, names, ports, as plain data.

A :class:`Plan` is computed once, deterministically, from weaver.toml (its text and
its parsed :class:`~pyweaver.contract.AppConfig`), the ``[kube]`` section and what the
app declares (:class:`AppInfo`, learnt by importing the app in a subprocess). The
manifests (:mod:`._manifests`) are written from it, and the part every pod needs at run
time, :class:`PodConfig`, travels to the pods as ``kube.json`` in the ConfigMap.

Groups are placed as in the multi deployer: each ``colocate`` entry is a group named
by its first component, every other component is a group of its own, and ``main``
belongs to the group that lists it, else to a group ``main``. One group is one
Deployment: one pod hosts every component of its group, so calls inside a group stay
local.

The *version* is the first 8 hex digits of a SHA-256 over everything the manifests
depend on (the config text, the ``[kube]`` section, the app's components and
listeners, the image and pyweaver's version): the same inputs give byte-identical
manifests, and any change gives a new version whose objects sit beside the old ones.
The deployment id (``<app>-<version>``) is in every call-protocol handshake, so two
versions never call each other.

With ``[kube] mtls`` (the default) each group's pods mount a Secret named
``<group resource>-tls`` (:meth:`Plan.secret_name`) at :data:`TLS_DIR`; the Secrets
themselves hold fresh keys each run, so they are written apart from the deterministic
manifests (``secret.yaml``, :func:`._manifests.secrets`). Who may call which of a
group's components (from the app's Ref edges) is deterministic and travels in
``kube.json`` (:attr:`PodGroup.callers`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from pyweaver._errors import ConfigError
from pyweaver._version import __version__
from pyweaver.contract import MAIN, AppConfig
from pyweaver.contract._tls import callers_of
from pyweaver.deployers.kube._config import GroupSettings, KubeConfig, ListenerSettings
from pyweaver.deployers.kube._names import dns_label, short_hash

__all__ = [
    "APP_DIR",
    "CONFIG_DIR",
    "TLS_DIR",
    "AppInfo",
    "GroupPlan",
    "ListenerPlan",
    "Plan",
    "PodConfig",
    "plan",
]

#: Where the image holds the app (the Dockerfile's WORKDIR).
APP_DIR: Final = "/app"
#: Where pods mount the ConfigMap.
CONFIG_DIR: Final = "/etc/pyweaver"
#: Where pods mount their group's TLS Secret (with ``[kube] mtls``).
TLS_DIR: Final = "/var/run/pyweaver/tls"
#: The files of a group's TLS Secret: the deployment CA's certificate, the group's
#: certificate and key, and the certificate and key of the pod's own control plane.
TLS_CA: Final = "ca.crt"
TLS_CERT: Final = "tls.crt"
TLS_KEY: Final = "tls.key"
DEPLOYER_CERT: Final = "deployer.crt"
DEPLOYER_KEY: Final = "deployer.key"


@attrs.frozen(kw_only=True)
class AppInfo:
    """What the app declares: its components, the routed ones, its listener
    fields (listener name -> declaring component) and its call graph's Ref edges,
    ``[caller, callee]`` (what mTLS authorization allows)."""

    components: list[str]
    routed: list[str] = attrs.field(factory=list)
    listeners: dict[str, str] = attrs.field(factory=dict)
    edges: list[list[str]] = attrs.field(factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppInfo:
        return cls(
            components=sorted(data["components"]),
            routed=sorted(data.get("routed", [])),
            listeners=dict(sorted(data.get("listeners", {}).items())),
            edges=sorted([list(edge) for edge in data.get("edges", [])]),
        )


@attrs.frozen(kw_only=True)
class PodGroup:
    """A group as a pod sees it: its components, whether any is routed, and the DNS
    name of its headless Service (one A record per ready pod)."""

    components: list[str]
    routed: bool
    service: str
    #: with mTLS: calling group -> the components of this group it may call.
    callers: dict[str, list[str]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PodListener:
    group: str
    port: int


@attrs.frozen(kw_only=True)
class PodConfig:
    """``kube.json``: what every pod reads at start (see :mod:`._pod`)."""

    app: str
    version: str
    deployment_id: str
    namespace: str
    app_dir: str
    data_port: int
    health_port: int
    discovery_interval: float
    groups: dict[str, PodGroup]
    listeners: dict[str, PodListener]
    #: with mTLS: where the group's Secret is mounted ("": no mTLS).
    tls_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PodConfig:
        try:
            data = json.loads(text)
            groups = {name: PodGroup(**group) for name, group in data.pop("groups").items()}
            listeners = {name: PodListener(**item) for name, item in data.pop("listeners").items()}
            return cls(**data, groups=groups, listeners=listeners)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"kube.json is malformed: {exc!r}") from exc

    def group_of(self, component: str) -> str | None:
        for name, group in self.groups.items():
            if component in group.components:
                return name
        return None


@attrs.frozen(kw_only=True)
class GroupPlan:
    name: str
    components: list[str]
    routed: bool
    #: the name of its Deployment, HPA and headless Service (a DNS-1123 label).
    resource: str
    settings: GroupSettings
    #: with mTLS: calling group -> the components of this group it may call.
    callers: dict[str, list[str]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ListenerPlan:
    name: str
    group: str
    #: the name of its Service.
    resource: str
    settings: ListenerSettings


@attrs.frozen(kw_only=True)
class Plan:
    app: str
    version: str
    deployment_id: str
    kube: KubeConfig
    image: str
    config_map: str
    config_text: str
    groups: list[GroupPlan]
    listeners: list[ListenerPlan]

    @property
    def mtls(self) -> bool:
        return self.kube.mtls

    def secret_name(self, group: GroupPlan) -> str:
        """The name of ``group``'s TLS Secret (a DNS-1123 subdomain)."""
        return f"{group.resource}-tls"

    def service_dns(self, group: GroupPlan) -> str:
        return f"{group.resource}.{self.kube.namespace}.svc.{self.kube.cluster_domain}"

    def pod_config(self) -> PodConfig:
        return PodConfig(
            app=self.app,
            version=self.version,
            deployment_id=self.deployment_id,
            namespace=self.kube.namespace,
            app_dir=APP_DIR,
            data_port=self.kube.data_port,
            health_port=self.kube.health_port,
            discovery_interval=self.kube.discovery_interval,
            groups={
                g.name: PodGroup(
                    components=g.components,
                    routed=g.routed,
                    service=self.service_dns(g),
                    callers=g.callers,
                )
                for g in self.groups
            },
            listeners={
                lp.name: PodListener(group=lp.group, port=lp.settings.port) for lp in self.listeners
            },
            tls_dir=TLS_DIR if self.mtls else "",
        )


def group_layout(config: AppConfig, components: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> its components (see the module docstring)."""
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for entry in config.colocate:
        names = [name for name in entry if name not in seen]
        if names:
            groups[names[0]] = names
            seen.update(names)
    for name in [MAIN, *sorted(components)]:
        if name not in seen:
            groups[name] = [name]
            seen.add(name)
    return groups


def plan(
    config: AppConfig,
    config_text: str,
    kube: KubeConfig,
    app: AppInfo,
    *,
    version: str = "",
) -> Plan:
    """The deployment's plan (see the module docstring); ``version`` overrides the
    computed one."""
    raw_kube = config.deployers.get("kube", {})
    if not version:
        version = short_hash(
            json.dumps(
                [config_text, raw_kube, attrs.asdict(app), kube.image, __version__],
                sort_keys=True,
                default=str,
            )
        )
    image = kube.image or f"{dns_label(config.name)}:{version}"
    layout = group_layout(config, app.components)
    routed = set(app.routed)
    for name in kube.groups:
        if name not in layout:
            raise ConfigError(
                f'{kube.file}: [kube.groups."{name}"] names no group of the app '
                f"(groups: {', '.join(layout)})"
            )
    groups = [
        GroupPlan(
            name=name,
            components=components,
            routed=any(c in routed for c in components),
            resource=f"{dns_label(config.name, name, limit=54)}-{version}",
            settings=kube.group(name),
            callers=callers_of(name, layout, app.edges) if kube.mtls else {},
        )
        for name, components in layout.items()
    ]
    group_of = {c: g for g, cs in layout.items() for c in cs}
    names = sorted(
        {*app.listeners, *kube.listeners, *config.single.listeners, *config.multi.listeners}
    )
    listeners: list[ListenerPlan] = []
    for index, name in enumerate(names):
        settings = kube.listener(name, index)
        group = settings.group or group_of.get(app.listeners.get(name, MAIN), group_of[MAIN])
        if group not in layout:
            raise ConfigError(
                f"{kube.file}: [kube.listeners.{name}] group: {group!r} is no group of the app "
                f"(groups: {', '.join(layout)})"
            )
        listeners.append(
            ListenerPlan(
                name=name,
                group=group,
                resource=f"{dns_label(name, limit=54)}-{version}",
                settings=settings,
            )
        )
    return Plan(
        app=config.name,
        version=version,
        deployment_id=f"{config.name}-{version}",
        kube=kube,
        image=image,
        config_map=f"{dns_label(config.name, 'config', limit=54)}-{version}",
        config_text=config_text,
        groups=groups,
        listeners=listeners,
    )
