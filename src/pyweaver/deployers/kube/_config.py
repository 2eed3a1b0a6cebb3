"""``[kube]``: the Kubernetes deployer's section of weaver.toml, parsed and checked.

Every key is optional::

    [kube]
    image = "registry.example.com/hello:v1"   # default: "<app>:<version>"
    namespace = "default"
    base_image = "python:3.11-slim"          # the Dockerfile's FROM
    pip = ["pyweaver==0.1.0"]                # what the Dockerfile pip-installs
    service_type = "LoadBalancer"            # of every listener's Service
    replicas = 1                             # pods of every group (the HPA's minimum)
    max_replicas = 10                        # the HPA's maximum
    cpu_utilization = 80                     # the HPA's CPU target, percent of requests
    resources = {requests = {cpu = "100m", memory = "128Mi"}, limits = {memory = "512Mi"}}
    probes = {period = 10, timeout = 2, failure_threshold = 3, initial_delay = 5}
    data_port = 10000                        # pods call each other on this port
    health_port = 10001                      # /healthz of every pod
    cluster_domain = "cluster.local"
    discovery_interval = 2.0                 # seconds between DNS look-ups of peer groups
    mtls = true                              # mutual TLS between pods (docs/security.md)

    [kube.groups."app.Factorer"]             # one group (named as in [multi])
    replicas = 2
    max_replicas = 20
    cpu_utilization = 70
    resources = {requests = {cpu = "500m"}}

    [kube.listeners.factors]
    port = 8080                              # the container port (default 20000, 20001 ...)
    service_port = 80                        # the Service's port (default 80)
    service_type = "ClusterIP"               # default: [kube] service_type
    group = "main"                           # the group that serves it (default: the
                                             # declaring component's group, else main's)

Mistakes are :class:`~pyweaver.ConfigError` naming the file, section and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

import attrs

from pyweaver._errors import ConfigError
from pyweaver._version import __version__

__all__ = ["GroupSettings", "KubeConfig", "ListenerSettings", "Probes", "parse_kube"]

SERVICE_TYPES: Final = ("ClusterIP", "NodePort", "LoadBalancer")
DEFAULT_RESOURCES: Final[Mapping[str, Mapping[str, str]]] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
FIRST_LISTENER_PORT: Final = 20000


@attrs.frozen(kw_only=True)
class Probes:
    """Readiness and liveness probe timing (seconds, and failures before acting)."""

    period: int = 10
    timeout: int = 2
    failure_threshold: int = 3
    initial_delay: int = 5


@attrs.frozen(kw_only=True)
class GroupSettings:
    """The pods of one colocation group."""

    replicas: int
    max_replicas: int
    cpu_utilization: int
    resources: dict[str, dict[str, str]]


@attrs.frozen(kw_only=True)
class ListenerSettings:
    """One listener's container port and Service."""

    port: int
    service_port: int
    service_type: str
    #: the group that serves it ("" = the declaring component's group, else main's)
    group: str = ""


@attrs.frozen(kw_only=True)
class KubeConfig:
    """A parsed ``[kube]`` section (see the module docstring)."""

    image: str = ""
    namespace: str = "default"
    base_image: str = "python:3.11-slim"
    pip: list[str] = attrs.field(factory=lambda: [f"pyweaver=={__version__}"])
    service_type: str = "LoadBalancer"
    replicas: int = 1
    max_replicas: int = 10
    cpu_utilization: int = 80
    resources: dict[str, dict[str, str]] = attrs.field(
        factory=lambda: {kind: dict(values) for kind, values in DEFAULT_RESOURCES.items()}
    )
    probes: Probes = attrs.field(factory=Probes)
    data_port: int = 10000
    health_port: int = 10001
    cluster_domain: str = "cluster.local"
    discovery_interval: float = 2.0
    mtls: bool = True
    #: group name -> its raw overrides (checked by :meth:`group`).
    groups: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: listener name -> its raw settings (checked by :meth:`listener`).
    listeners: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    file: str = "<config>"

    def group(self, name: str) -> GroupSettings:
        """The settings of group ``name``: its overrides over the section's defaults."""
        raw = self.groups.get(name, {})
        section = f'[kube.groups."{name}"]'
        reader = _Reader(self.file)
        reader.unknown_keys(
            raw, section, ("replicas", "max_replicas", "cpu_utilization", "resources")
        )
        replicas = reader.count(raw, "replicas", section, self.replicas)
        maximum = reader.count(raw, "max_replicas", section, max(self.max_replicas, replicas))
        if maximum < replicas:
            raise reader.error(
                section, "max_replicas", f"{maximum} is less than replicas ({replicas})"
            )
        resources = (
            reader.resources(raw["resources"], section) if "resources" in raw else self.resources
        )
        return GroupSettings(
            replicas=replicas,
            max_replicas=maximum,
            cpu_utilization=reader.count(raw, "cpu_utilization", section, self.cpu_utilization),
            resources={kind: dict(values) for kind, values in resources.items()},
        )

    def listener(self, name: str, index: int) -> ListenerSettings:
        """The settings of listener ``name``, the ``index``-th in name order."""
        raw = self.listeners.get(name, {})
        section = f"[kube.listeners.{name}]"
        reader = _Reader(self.file)
        reader.unknown_keys(raw, section, ("port", "service_port", "service_type", "group"))
        service_type = raw.get("service_type", self.service_type)
        reader.service_type(service_type, section, "service_type")
        return ListenerSettings(
            port=reader.port(raw, "port", section, FIRST_LISTENER_PORT + index),
            service_port=reader.port(raw, "service_port", section, 80),
            service_type=service_type,
            group=reader.string(raw, "group", section, ""),
        )


_KEYS: Final = (
    "image",
    "namespace",
    "base_image",
    "pip",
    "service_type",
    "replicas",
    "max_replicas",
    "cpu_utilization",
    "resources",
    "probes",
    "data_port",
    "health_port",
    "cluster_domain",
    "discovery_interval",
    "mtls",
    "groups",
    "listeners",
)


def parse_kube(raw: Mapping[str, Any], *, file: str = "<config>") -> KubeConfig:
    """The ``[kube]`` table ``raw`` (``AppConfig.deployers.get("kube", {})``) checked."""
    reader = _Reader(file)
    section = "[kube]"
    reader.unknown_keys(raw, section, _KEYS)
    defaults = KubeConfig()
    strings = {
        key: reader.string(raw, key, section, getattr(defaults, key))
        for key in ("image", "namespace", "base_image", "service_type", "cluster_domain")
    }
    reader.service_type(strings["service_type"], section, "service_type")
    pip = raw.get("pip", defaults.pip)
    if not isinstance(pip, list) or not all(isinstance(item, str) for item in pip):
        raise reader.error(section, "pip", "expected a list of strings")
    probes_raw = raw.get("probes", {})
    if not isinstance(probes_raw, dict):
        raise reader.error(section, "probes", "expected a table")
    reader.unknown_keys(probes_raw, "[kube] probes", tuple(attrs.fields_dict(Probes)))
    probes = Probes(
        **{
            key: reader.count(
                probes_raw, key, "[kube] probes", default, minimum=key != "initial_delay"
            )
            for key, default in attrs.asdict(Probes()).items()
        }
    )
    interval = raw.get("discovery_interval", defaults.discovery_interval)
    if type(interval) not in (int, float) or interval <= 0:
        raise reader.error(section, "discovery_interval", "expected a positive number of seconds")
    mtls = raw.get("mtls", defaults.mtls)
    if type(mtls) is not bool:
        raise reader.error(section, "mtls", f"expected true or false, got {mtls!r}")
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for key in ("groups", "listeners"):
        table = raw.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise reader.error(section, key, "expected a table of tables")
        tables[key] = table
    replicas = reader.count(raw, "replicas", section, defaults.replicas)
    return KubeConfig(
        **strings,
        pip=list(pip),
        replicas=replicas,
        max_replicas=max(
            reader.count(raw, "max_replicas", section, defaults.max_replicas), replicas
        ),
        cpu_utilization=reader.count(raw, "cpu_utilization", section, defaults.cpu_utilization),
        resources=(
            reader.resources(raw["resources"], section)
            if "resources" in raw
            else defaults.resources
        ),
        probes=probes,
        data_port=reader.port(raw, "data_port", section, defaults.data_port),
        health_port=reader.port(raw, "health_port", section, defaults.health_port),
        discovery_interval=float(interval),
        mtls=mtls,
        groups=tables["groups"],
        listeners=tables["listeners"],
        file=file,
    )


class _Reader:
    """Typed access to the raw tables, with errors naming file, section and key."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, section: str, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {section} {key}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], section: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                also = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
                raise self.error(section, repr(key), f"unknown key{also}")

    def string(self, table: Mapping[str, Any], key: str, section: str, default: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.error(section, key, "expected a string")
        return value

    def count(
        self,
        table: Mapping[str, Any],
        key: str,
        section: str,
        default: int,
        *,
        minimum: bool = True,
    ) -> int:
        value = table.get(key, default)
        if type(value) is not int or value < (1 if minimum else 0):
            raise self.error(
                section, key, f"expected a whole number of at least {1 if minimum else 0}"
            )
        return value

    def port(self, table: Mapping[str, Any], key: str, section: str, default: int) -> int:
        value = table.get(key, default)
        if type(value) is not int or not 1 <= value <= 65535:
            raise self.error(section, key, "expected a port number (1-65535)")
        return value

    def service_type(self, value: Any, section: str, key: str) -> None:
        if value not in SERVICE_TYPES:
            raise self.error(section, key, f"expected one of {', '.join(SERVICE_TYPES)}")

    def resources(self, value: Any, section: str) -> dict[str, dict[str, str]]:
        if not isinstance(value, dict):
            raise self.error(section, "resources", "expected a table")
        self.unknown_keys(value, f"{section} resources", ("requests", "limits"))
        resources: dict[str, dict[str, str]] = {}
        for kind, amounts in value.items():
            if not isinstance(amounts, dict) or not all(
                isinstance(k, str) and isinstance(v, str | int) for k, v in amounts.items()
            ):
                raise self.error(
                    section, f"resources.{kind}", 'expected {cpu = "...", memory = "..."}'
                )
            resources[kind] = {name: str(amount) for name, amount in amounts.items()}
        return resources
