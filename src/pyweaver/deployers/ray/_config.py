"""The ``[ray]`` section of weaver.toml.

::

    [ray]
    namespace = "pyweaver"          # the Ray namespace of the deployment's actors
    replicas = 2                    # replica actors per group (main's group: 1)
    cpus = 0.1                      # CPUs each replica actor requests (>= 0.1)
    memory_mb = 0                   # memory each replica actor requests (0: none)
    max_restarts = -1               # Ray restarts of a crashed replica (-1: forever)
    ship_pyweaver = false           # ship this pyweaver with the app (py_modules)
    mtls = true                     # mutual TLS between replicas (docs/security.md)
    runtime_env = {env_vars = {LOG = "1"}, pip = ["requests"]}   # merged into Ray's
    listeners.factors = {address = "0.0.0.0:8080"}               # the proxy's address

    [ray.groups."app.Factorer"]     # per group: replicas, cpus, memory_mb, resources
    replicas = 3
    resources = {gpu_host = 1}      # Ray custom resources (pin a group to some nodes)

Why at least 0.1 CPU: measured on Ray 2.60, an actor that requests no resources at all
ignores soft node affinity and lands anywhere, so replicas would not stay where Ray's
scheduler means them to be. Mistakes are :class:`~pyweaver.ConfigError` naming the
file, section and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

import attrs

from pyweaver._errors import ConfigError

__all__ = ["GroupSettings", "RayConfig", "parse_ray"]

MIN_CPUS: Final = 0.1
DEFAULT_REPLICAS: Final = 2
_TOP_KEYS: Final = (
    "namespace",
    "replicas",
    "cpus",
    "memory_mb",
    "max_restarts",
    "ship_pyweaver",
    "mtls",
    "runtime_env",
    "listeners",
    "groups",
)
_GROUP_KEYS: Final = ("replicas", "cpus", "memory_mb", "resources")


@attrs.frozen(kw_only=True)
class GroupSettings:
    """One group's replica actors: how many, and what each requests from Ray."""

    replicas: int | None = None  # None: the section's default (main's group: 1)
    cpus: float = MIN_CPUS
    memory_mb: int = 0
    resources: dict[str, float] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RayConfig:
    file: str = "weaver.toml"
    namespace: str = "pyweaver"
    replicas: int = DEFAULT_REPLICAS
    cpus: float = MIN_CPUS
    memory_mb: int = 0
    max_restarts: int = -1
    ship_pyweaver: bool = False
    mtls: bool = True
    runtime_env: dict[str, Any] = attrs.field(factory=dict)
    listeners: dict[str, str] = attrs.field(factory=dict)
    groups: dict[str, GroupSettings] = attrs.field(factory=dict)

    def group(self, name: str, *, is_main: bool) -> GroupSettings:
        """``name``'s settings with the section's defaults filled in."""
        settings = self.groups.get(name)
        if settings is None:
            settings = GroupSettings(cpus=self.cpus, memory_mb=self.memory_mb)
        if settings.replicas is None:
            settings = attrs.evolve(settings, replicas=1 if is_main else self.replicas)
        return settings


def _unknown(file: str, section: str, key: str, known: tuple[str, ...]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"{file}: [{section}] unknown key {key!r}{hint}")


def _number(file: str, section: str, key: str, value: object, *, least: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{file}: [{section}] {key} must be a number, got {value!r}")
    if value < least:
        why = " (Ray ignores node affinity for actors that request no CPU)" if key == "cpus" else ""
        raise ConfigError(f"{file}: [{section}] {key} must be at least {least:g}{why}")
    return float(value)


def _integer(file: str, section: str, key: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{file}: [{section}] {key} must be an integer, got {value!r}")
    if value < least:
        raise ConfigError(f"{file}: [{section}] {key} must be at least {least}")
    return value


def _group(file: str, name: str, raw: object, defaults: RayConfig) -> GroupSettings:
    section = f'ray.groups."{name}"'
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{file}: [{section}] must be a table")
    for key in raw:
        if key not in _GROUP_KEYS:
            raise _unknown(file, section, key, _GROUP_KEYS)
    resources = raw.get("resources", {})
    if not isinstance(resources, Mapping):
        raise ConfigError(f"{file}: [{section}] resources must be a table of numbers")
    return GroupSettings(
        replicas=(
            _integer(file, section, "replicas", raw["replicas"], least=1)
            if "replicas" in raw
            else None
        ),
        cpus=_number(file, section, "cpus", raw.get("cpus", defaults.cpus), least=MIN_CPUS),
        memory_mb=_integer(
            file, section, "memory_mb", raw.get("memory_mb", defaults.memory_mb), least=0
        ),
        resources={
            str(k): _number(file, section, f"resources.{k}", v, least=0.0)
            for k, v in resources.items()
        },
    )


def parse_ray(raw: Mapping[str, Any], *, file: str = "weaver.toml") -> RayConfig:
    """The ``[ray]`` section (``AppConfig.deployers["ray"]``), checked."""
    for key in raw:
        if key not in _TOP_KEYS:
            raise _unknown(file, "ray", key, _TOP_KEYS)
    namespace = raw.get("namespace", "pyweaver")
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"{file}: [ray] namespace must be a non-empty string")
    ship = raw.get("ship_pyweaver", False)
    if not isinstance(ship, bool):
        raise ConfigError(f"{file}: [ray] ship_pyweaver must be true or false")
    mtls = raw.get("mtls", True)
    if not isinstance(mtls, bool):
        raise ConfigError(f"{file}: [ray] mtls: expected true or false, got {mtls!r}")
    runtime_env = raw.get("runtime_env", {})
    if not isinstance(runtime_env, Mapping):
        raise ConfigError(f"{file}: [ray] runtime_env must be a table")
    if "working_dir" in runtime_env:
        raise ConfigError(
            f"{file}: [ray] runtime_env.working_dir is set by pyweaver (the app's directory)"
        )
    listeners: dict[str, str] = {}
    raw_listeners = raw.get("listeners", {})
    if not isinstance(raw_listeners, Mapping):
        raise ConfigError(f"{file}: [ray] listeners must be a table")
    for name, value in raw_listeners.items():
        address = value.get("address") if isinstance(value, Mapping) else None
        if not isinstance(address, str):
            raise ConfigError(
                f'{file}: [ray] listeners.{name} must be {{address = "host:port"}}, got {value!r}'
            )
        listeners[str(name)] = address
    base = RayConfig(
        file=file,
        namespace=namespace,
        replicas=_integer(file, "ray", "replicas", raw.get("replicas", DEFAULT_REPLICAS), least=1),
        cpus=_number(file, "ray", "cpus", raw.get("cpus", MIN_CPUS), least=MIN_CPUS),
        memory_mb=_integer(file, "ray", "memory_mb", raw.get("memory_mb", 0), least=0),
        max_restarts=_integer(file, "ray", "max_restarts", raw.get("max_restarts", -1), least=-1),
        ship_pyweaver=ship,
        mtls=mtls,
        runtime_env=dict(runtime_env),
        listeners=listeners,
    )
    raw_groups = raw.get("groups", {})
    if not isinstance(raw_groups, Mapping):
        raise ConfigError(f"{file}: [ray] groups must be a table of tables")
    groups = {str(name): _group(file, str(name), value, base) for name, value in raw_groups.items()}
    return attrs.evolve(base, groups=groups)
