"""weaver.toml: the application's config file, parsed and checked.

The file (TOML, read with the standard library's ``tomllib``)::

    [serviceweaver]
    name = "hello"                    # default: the binary's stem (or the module's name)
    binary = "app.py"                 # the app's script, relative to this file; or:
    # module = "hello.main"           # run as ``python -m hello.main`` (not both)
    args = ["--verbose"]              # argv for the app
    env = ["KEY=VALUE"]               # environment for the app's processes
    colocate = [["app.A", "app.B"]]   # groups of full component names; the first names
                                      # the group; a component is in at most one group

    [single]                          # the single-process deployer
    listeners.hello = {address = "localhost:9000"}

    [multi]                           # the multiprocess deployer
    listeners.hello = {address = "localhost:9000"}   # the proxy's address
    replicas = 2                      # replicas of every group (default: the deployer's)

    [telemetry]                       # traces and metrics (docs/telemetry.md)
    sample_ratio = 0.1                # fraction of new traces recorded (0 to 1)
    sample_rate = 5                   # at most this many new traces per second per process
    otlp_endpoint = "http://127.0.0.1:4318"   # also export spans over OTLP/HTTP
    metrics_address = "127.0.0.1:9464"        # the multi deployer serves /metrics there

    ["app.Reverser"]                  # a component's weaver.WithConfig section,
    size = 1000                       # keyed by the component's full name (quoted)

Replicas per group. ``replicas`` is either an integer (every group) or a table mapping
group names to integers, where the key ``default`` sets the count for groups not
listed. Where the file says nothing, the deployer decides (:meth:`MultiConfig.replicas_for`
returns None). A group is named by its first component (``"app.A"`` above), by the component
itself when it is in no colocate group, or ``main``::

    [multi.replicas]
    default = 2                       # every group not listed
    "app.Cache" = 1                   # this group: one replica
    main = 1

The dotted spelling ``replicas.app.Cache = 1`` inside ``[multi]`` means the same as
``"app.Cache" = 1`` in the table.

Every mistake is a :class:`~pyweaver.ConfigError` naming the file and the line (broken
TOML) or the section and key (wrong or unknown key, wrong type). Component sections are
checked against the app by :func:`check_sections` (a section for an unknown component,
or for one without ``WithConfig``, is an error) and turned into the component's config
object by :func:`component_config` (unknown keys and wrong types are errors; a missing
section means all defaults).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

from pyweaver._errors import ConfigError
from pyweaver._net import parse_address
from pyweaver.contract._names import MAIN

__all__ = [
    "AppConfig",
    "AppFacts",
    "ConfigFindings",
    "MultiConfig",
    "SingleConfig",
    "TelemetryConfig",
    "check_app_config",
    "check_sections",
    "component_config",
    "deployer_mtls",
    "load_config",
    "parse_config",
]

C = TypeVar("C")

_DEFAULT_NAME = "app"
# Sections of deployers that read their own keys; kept raw in AppConfig.deployers.
_DEPLOYER_SECTIONS = ("ray", "kube")


@attrs.frozen(kw_only=True)
class SingleConfig:
    """``[single]``: the single-process deployer."""

    #: listener name -> the address to listen on ("host:port").
    listeners: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class MultiConfig:
    """``[multi]``: the multiprocess deployer."""

    #: listener name -> the address its proxy listens on ("host:port").
    listeners: dict[str, str] = attrs.field(factory=dict)
    #: Replicas of a group not in ``group_replicas``; None: the file does not say (the
    #: deployer's own default applies).
    replicas: int | None = None
    #: group name -> replicas of that group.
    group_replicas: dict[str, int] = attrs.field(factory=dict)
    #: Mutual TLS between weavelets and with the deployer, with authorization by the
    #: call graph (docs/security.md). Off by default: on one machine the private run
    #: directory's permissions already keep other users out.
    mtls: bool = False
    #: Seconds a component call made without a deadline may take (``call_timeout``,
    #: e.g. ``"30s"``, ``"500ms"`` or a number of seconds).
    call_timeout: float = 30.0

    def replicas_for(self, group: str) -> int | None:
        """Replicas of ``group``: its own count, else the file's default, else None."""
        return self.group_replicas.get(group, self.replicas)


@attrs.frozen(kw_only=True)
class TelemetryConfig:
    """``[telemetry]``: trace sampling, OTLP export, the metrics scrape address.

    A trace is sampled (recorded) or not where it starts, its *root*: an
    ``instrument_handler`` request without a ``traceparent``, or user code starting a
    span. Every span under it, in every process, follows the root's decision (the
    decision travels with the trace context), so a recorded trace is always complete.
    """

    #: Fraction of new (root) traces recorded, 0 to 1; None: the file does not say
    #: (1 when ``sample_rate`` is given, else tracing is off).
    sample_ratio: float | None = None
    #: At most this many new traces recorded per second, per process (a token bucket
    #: with a burst of ``max(1, rate)``); None: no limit.
    sample_rate: float | None = None
    #: Also send spans to this OTLP/HTTP collector (``http://host:4318``; the traces
    #: path ``/v1/traces`` is added when the URL has no path); "" : the standard
    #: ``OTEL_EXPORTER_OTLP_*`` variables decide.
    otlp_endpoint: str = ""
    #: Where the multi deployer serves ``/metrics`` (Prometheus and OpenMetrics
    #: text) for the deployment's lifetime; "": nowhere (the dashboard still does).
    metrics_address: str = ""

    def effective_ratio(self) -> float:
        """The fraction of root traces recorded (0: tracing off)."""
        if self.sample_ratio is not None:
            return self.sample_ratio
        return 1.0 if self.sample_rate is not None else 0.0


@attrs.frozen(kw_only=True)
class AppConfig:
    """A parsed weaver.toml."""

    #: The file it came from (None for text from elsewhere).
    path: Path | None = None
    name: str = _DEFAULT_NAME
    #: The app's script as written (relative paths are relative to ``path``'s
    #: directory; see :meth:`binary_path`), or "".
    binary: str = ""
    #: The app's module (``python -m``), or "".
    module: str = ""
    args: list[str] = attrs.field(factory=list)
    #: "KEY=VALUE" strings, in file order (a later one wins).
    env: list[str] = attrs.field(factory=list)
    colocate: list[list[str]] = attrs.field(factory=list)
    single: SingleConfig = attrs.field(factory=SingleConfig)
    multi: MultiConfig = attrs.field(factory=MultiConfig)
    telemetry: TelemetryConfig = attrs.field(factory=TelemetryConfig)
    #: component full name -> its raw section table.
    sections: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: Raw sections of other deployers (``[ray]``, ``[kube]``), which check them.
    deployers: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def binary_path(self) -> Path | None:
        """The app's script, resolved against the config file's directory."""
        if not self.binary:
            return None
        base = self.path.parent if self.path is not None else Path()
        return base / self.binary

    def app_argv(self) -> list[str]:
        """How to run the app: ``[python, script, *args]`` or ``[python, -m, module, *args]``."""
        script = self.binary_path()
        if script is not None:
            return [sys.executable, str(script), *self.args]
        if self.module:
            return [sys.executable, "-m", self.module, *self.args]
        raise ConfigError(
            f"{self.path or '<config>'}: [serviceweaver] names neither binary nor module"
        )

    def env_vars(self) -> dict[str, str]:
        """``env`` as a mapping (a later entry wins)."""
        return dict(entry.split("=", 1) for entry in self.env)

    def group_of(self, component: str) -> str:
        """The colocation group ``component`` runs in: its group's first name, or the
        component itself when it is in no group."""
        for group in self.colocate:
            if component in group:
                return group[0]
        return component


# -- parsing ----------------------------------------------------------------------------


def load_config(path: str | Path) -> AppConfig:
    """Read and parse the weaver.toml at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return _parse(text, str(path), Path(path))


def parse_config(text: str, *, path: str = "<config>") -> AppConfig:
    """Parse weaver.toml text; ``path`` names it in messages."""
    return _parse(text, path, None)


_TOML_POSITION = re.compile(r"^(?P<message>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _parse(text: str, file: str, path: Path | None) -> AppConfig:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match is None:
            raise ConfigError(f"{file}: {exc}") from exc
        raise ConfigError(
            f"{file} line {match['line']}: {match['message']} (column {match['col']})"
        ) from exc
    reader = _Reader(file)
    serviceweaver = reader.table(document, "serviceweaver", "[serviceweaver]")
    single = reader.table(document, "single", "[single]")
    multi = reader.table(document, "multi", "[multi]")
    telemetry = reader.table(document, "telemetry", "[telemetry]")
    sections: dict[str, dict[str, Any]] = {}
    deployers: dict[str, dict[str, Any]] = {}
    for key, value in document.items():
        if key in ("serviceweaver", "single", "multi", "telemetry"):
            continue
        if not isinstance(value, dict):
            raise ConfigError(
                f"{file}: key {key!r} is outside any section (put it under [serviceweaver] "
                "or a component's section)"
            )
        if key in _DEPLOYER_SECTIONS:
            deployers[key] = value
        elif "." in key:
            sections[key] = value
        else:
            raise ConfigError(
                f"{file}: unknown section [{key}] (sections are serviceweaver, single, "
                f"multi, telemetry, {', '.join(_DEPLOYER_SECTIONS)}, or a component's full "
                f'name in quotes, like ["app.Reverser"])'
            )
    return reader.app(
        serviceweaver=serviceweaver,
        single=single,
        multi=multi,
        telemetry=telemetry,
        sections=sections,
        deployers=deployers,
        path=path,
    )


class _Reader:
    """Typed access to the raw TOML tables, with errors naming file, section and key."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, section: str, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {section} {key}: {message}")

    def table(self, document: Mapping[str, Any], key: str, section: str) -> dict[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.file}: {section} must be a table, got {_kind(value)}")
        return value

    def unknown_keys(self, table: Mapping[str, Any], section: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                also = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
                raise self.error(section, repr(key), f"unknown key{also}")

    def string(self, table: Mapping[str, Any], key: str, section: str) -> str:
        value = table.get(key, "")
        if not isinstance(value, str):
            raise self.error(section, key, f"expected a string, got {_kind(value)}")
        return value

    def strings(self, table: Mapping[str, Any], key: str, section: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(section, key, f"expected a list of strings, got {_kind(value)}")
        return list(value)

    def app(
        self,
        *,
        serviceweaver: dict[str, Any],
        single: dict[str, Any],
        multi: dict[str, Any],
        telemetry: dict[str, Any],
        sections: dict[str, dict[str, Any]],
        deployers: dict[str, dict[str, Any]],
        path: Path | None,
    ) -> AppConfig:
        self.unknown_keys(single, "[single]", ("listeners",))
        for name, table in deployers.items():
            if "listeners" in table:  # addresses validated here; the deployer reads the rest
                self.listeners(table, f"[{name}]", deployer_keys=True)
        section = "[serviceweaver]"
        self.unknown_keys(
            serviceweaver, section, ("name", "binary", "module", "args", "env", "colocate")
        )
        binary = self.string(serviceweaver, "binary", section)
        module = self.string(serviceweaver, "module", section)
        if binary and module:
            raise self.error(section, "binary", "give binary or module, not both")
        name = self.string(serviceweaver, "name", section) or _default_name(binary, module)
        env = self.strings(serviceweaver, "env", section)
        for entry in env:
            key, equals, _ = entry.partition("=")
            if not equals or not key or "\0" in entry:
                raise self.error(section, "env", f"{entry!r} is not KEY=VALUE")
        return AppConfig(
            path=path,
            name=name,
            binary=binary,
            module=module,
            args=self.strings(serviceweaver, "args", section),
            env=env,
            colocate=self.colocate(serviceweaver.get("colocate", []), section),
            single=SingleConfig(listeners=self.listeners(single, "[single]")),
            multi=self.multi(multi),
            telemetry=self.telemetry(telemetry),
            sections=sections,
            deployers=deployers,
        )

    def colocate(self, value: Any, section: str) -> list[list[str]]:
        if not isinstance(value, list) or not all(
            isinstance(group, list) and group and all(isinstance(n, str) for n in group)
            for group in value
        ):
            raise self.error(
                section,
                "colocate",
                f"expected a list of non-empty lists of component names, got {_kind(value)}",
            )
        placed: dict[str, int] = {}
        for index, group in enumerate(value):
            for name in group:
                if name in placed:
                    where = "twice in one group" if placed[name] == index else "in two groups"
                    raise self.error(section, "colocate", f"{name} is {where}")
                placed[name] = index
        return [list(group) for group in value]

    def listeners(
        self, table: dict[str, Any], section: str, *, deployer_keys: bool = False
    ) -> dict[str, str]:
        """The ``listeners`` table of ``section``: name -> address. With
        ``deployer_keys`` (``[ray]``, ``[kube]``) a listener may have keys of its
        deployer's own and need not have an address; an address given is checked."""
        raw = table.get("listeners", {})
        if not isinstance(raw, dict):
            raise self.error(section, "listeners", f"expected a table, got {_kind(raw)}")
        listeners: dict[str, str] = {}
        for name, spec in raw.items():
            key = f"listeners.{name}"
            if not name.isidentifier():
                raise self.error(section, key, "a listener name is an identifier")
            if not isinstance(spec, dict):
                raise self.error(
                    section, key, f'expected {{address = "host:port"}}, got {_kind(spec)}'
                )
            if not deployer_keys:
                self.unknown_keys(spec, f"{section} {key}", ("address",))
            elif "address" not in spec:
                continue
            address = spec.get("address")
            if not isinstance(address, str):
                raise self.error(
                    section, f"{key}.address", f'expected "host:port", got {_kind(address)}'
                )
            problem = _address_problem(address)
            if problem:
                raise self.error(section, f"{key}.address", problem)
            listeners[name] = address
        return listeners

    def multi(self, table: dict[str, Any]) -> MultiConfig:
        section = "[multi]"
        self.unknown_keys(table, section, ("listeners", "replicas", "mtls", "call_timeout"))
        if "call_timeout" in table:
            timeout = self.seconds(table["call_timeout"], section, "call_timeout")
            rest = {k: v for k, v in table.items() if k != "call_timeout"}
            return attrs.evolve(self.multi(rest), call_timeout=timeout)
        listeners = self.listeners(table, section)
        mtls = self.boolean(table, "mtls", section, default=False)
        raw = table.get("replicas")
        if raw is None:
            return MultiConfig(listeners=listeners, mtls=mtls)
        if not isinstance(raw, dict):
            return MultiConfig(
                listeners=listeners, replicas=self.count(raw, section, "replicas"), mtls=mtls
            )
        default: int | None = None
        groups: dict[str, int] = {}
        for group, value in _flatten(raw):
            key = f"replicas.{group}" if "." not in group else f'replicas."{group}"'
            count = self.count(value, section, key)
            if group == "default":
                default = count
            else:
                groups[group] = count
        return MultiConfig(
            listeners=listeners, replicas=default, group_replicas=groups, mtls=mtls
        )

    def boolean(self, table: Mapping[str, Any], key: str, section: str, *, default: bool) -> bool:
        value = table.get(key, default)
        if type(value) is not bool:
            raise self.error(section, key, f"expected true or false, got {_kind(value)}")
        return value

    def telemetry(self, table: dict[str, Any]) -> TelemetryConfig:
        section = "[telemetry]"
        self.unknown_keys(
            table, section, ("sample_ratio", "sample_rate", "otlp_endpoint", "metrics_address")
        )
        ratio = self.number(table, "sample_ratio", section)
        if ratio is not None and not 0 <= ratio <= 1:
            raise self.error(section, "sample_ratio", f"expected 0 to 1, got {ratio}")
        rate = self.number(table, "sample_rate", section)
        if rate is not None and not rate > 0:
            raise self.error(
                section, "sample_rate", f"expected traces per second above 0, got {rate}"
            )
        endpoint = self.string(table, "otlp_endpoint", section)
        if endpoint and not re.match(r"^https?://[^/\s]+(/\S*)?$", endpoint):
            raise self.error(
                section, "otlp_endpoint", f'expected "http://host:port[/path]", got {endpoint!r}'
            )
        address = self.string(table, "metrics_address", section)
        if address:
            problem = _address_problem(address)
            if problem:
                raise self.error(section, "metrics_address", problem)
        return TelemetryConfig(
            sample_ratio=ratio, sample_rate=rate, otlp_endpoint=endpoint, metrics_address=address
        )

    def number(self, table: Mapping[str, Any], key: str, section: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if type(value) not in (int, float) or value != value:  # noqa: PLR0124 (NaN)
            raise self.error(section, key, f"expected a number, got {_kind(value)}")
        return float(value)

    def seconds(self, value: Any, section: str, key: str) -> float:
        """A positive duration: a number of seconds, or a string like "30s", "500ms"."""
        number: float | None = None
        if type(value) in (int, float):
            number = float(value)
        elif isinstance(value, str):
            text = value.strip()
            for unit, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
                if text.endswith(unit):
                    try:
                        number = float(text[: -len(unit)]) * scale
                    except ValueError:
                        number = None
                    break
        if number is None or not number > 0 or number == float("inf"):
            raise self.error(
                section, key, f'expected a positive duration like "30s" or "500ms", got {value!r}'
            )
        return number

    def count(self, value: Any, section: str, key: str) -> int:
        if type(value) is not int:
            raise self.error(section, key, f"expected a whole number, got {_kind(value)}")
        if value < 1:
            raise self.error(section, key, f"expected at least 1, got {value}")
        return value


def deployer_mtls(cfg: AppConfig, deployer: str) -> bool:
    """``mtls`` of ``[ray]`` or ``[kube]``: on unless the file turns it off (calls
    there cross machines)."""
    file = str(cfg.path) if cfg.path is not None else "<config>"
    table = cfg.deployers.get(deployer, {})
    return _Reader(file).boolean(table, "mtls", f"[{deployer}]", default=True)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"app": {"Cache": 1}}`` -> ``[("app.Cache", 1)]`` (dotted TOML keys)."""
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{name}."))
        else:
            items.append((name, value))
    return items


_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")


def _address_problem(address: str) -> str:
    """Why ``address`` is not a listen address (``"host:port"``, ``"[v6]:port"``,
    ``":port"`` or ``""``), or "" when it is one."""
    if not address:
        return ""
    try:
        parse_address(address, what="address")
    except ConfigError as exc:
        return str(exc)
    host, _, port = address.rpartition(":")
    if not re.fullmatch(r"[0-9]+", port):
        return f"address {address!r}: port {port!r} is not a number"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"address {address!r}: {host} is not an IPv6 address"
    elif ":" in host:
        return f"address {address!r}: write an IPv6 host in brackets, like [::1]:8000"
    elif host and not _HOSTNAME.match(host):
        return f"address {address!r}: {host!r} is not a host name or IP address"
    return ""


def _default_name(binary: str, module: str) -> str:
    if binary:
        return Path(binary).stem
    parts = [part for part in module.split(".") if part and part not in ("main", "__main__")]
    return parts[-1] if parts else _DEFAULT_NAME


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    for tp, kind in kinds.items():
        if type(value) is tp:
            return f"{kind} ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value})"
    return type(value).__name__


# -- checks against the app -------------------------------------------------------------


def _section_label(name: str) -> str:
    return f'["{name}"]'


@attrs.frozen(kw_only=True)
class AppFacts:
    """What the app's code says that weaver.toml must agree with, learned by importing
    the app (``pyweaver check`` and deployers do it in a subprocess, see
    :mod:`pyweaver.contract._appfacts`; a weavelet from its own registry)."""

    #: component full name -> whether its implementation uses ``weaver.WithConfig``.
    components: dict[str, bool] = attrs.field(factory=dict)
    #: listener names the app's code uses (declared fields and literal
    #: ``listener("name")`` calls); None: it cannot be told (a computed name).
    listeners: list[str] | None = None
    #: problems of the app's code itself (types, routers, Refs), found at registration.
    app_errors: list[str] = attrs.field(factory=list)
    #: problems of ``WithConfig`` sections against their config classes (only the
    #: process that imported the classes can find them).
    section_errors: list[str] = attrs.field(factory=list)
    #: the components with a router (``weaver.WithRouter``).
    routed: list[str] = attrs.field(factory=list)
    #: listener fields declared on implementations: listener name -> its component.
    listener_fields: dict[str, str] = attrs.field(factory=dict)
    #: the call graph's Ref edges, [caller, callee] (what mTLS authorization allows).
    edges: list[list[str]] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppFacts:
        return cattrs.structure(dict(data), cls)


@attrs.frozen(kw_only=True)
class ConfigFindings:
    """The outcome of :func:`check_app_config`: errors stop a deployment, warnings do not."""

    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)


def check_app_config(cfg: AppConfig, facts: AppFacts) -> ConfigFindings:
    """Check weaver.toml against the app: component sections name components that use
    ``WithConfig`` (and fit their config classes: ``facts.section_errors``), colocate
    and ``[multi] replicas`` name components and groups of the app, and configured
    listener names are used by the app (a warning when not). The one check that both
    ``pyweaver check`` and every deployer run, right after the app's components are
    known; every message names file, section and key."""
    file = str(cfg.path) if cfg.path is not None else "<config>"
    known = facts.components
    names = sorted(known)

    def hint(name: str) -> str:
        close = difflib.get_close_matches(name, names, n=1)
        return f"; did you mean {close[0]!r}?" if close else ""

    errors: list[str] = []
    for name in cfg.sections:
        label = _section_label(name)
        if name not in known:
            close = difflib.get_close_matches(name, names, n=1)
            also = f"; did you mean {_section_label(close[0])}?" if close else ""
            errors.append(f"{file}: section {label} names no component of the app{also}")
        elif not known[name]:
            errors.append(
                f"{file}: section {label}: {name} has no config "
                "(its implementation does not use weaver.WithConfig)"
            )
    errors.extend(facts.section_errors)
    errors.extend(
        f"{file}: [serviceweaver] colocate: {name} names no component of the app{hint(name)}"
        for members in cfg.colocate
        for name in members
        if name != MAIN and name not in known
    )
    for group in cfg.multi.group_replicas:
        key = f'replicas."{group}"' if "." in group else f"replicas.{group}"
        if group == MAIN:
            continue
        if group not in known:
            errors.append(
                f"{file}: [multi] {key}: {group} names no component or group of the "
                f"app{hint(group)}"
            )
        elif cfg.group_of(group) != group:
            errors.append(
                f"{file}: [multi] {key}: {group} runs in the group {cfg.group_of(group)}; "
                "set the replicas of that group"
            )
    warnings: list[str] = []
    if facts.listeners is not None:
        used = set(facts.listeners)
        tables = [("[single]", cfg.single.listeners), ("[multi]", cfg.multi.listeners)]
        tables.extend(
            (f"[{name}]", table.get("listeners", {})) for name, table in cfg.deployers.items()
        )
        for section, listeners in tables:
            for listener in listeners:
                if listener not in used:
                    known_listeners = ", ".join(sorted(used)) or "none"
                    warnings.append(
                        f"{file}: {section} listeners.{listener}: no component uses a "
                        f"listener named {listener!r} (the app's listeners: {known_listeners})"
                    )
    return ConfigFindings(errors=errors, warnings=warnings)


def check_sections(cfg: AppConfig, known_components: Mapping[str, type | None]) -> None:
    """:func:`check_app_config` for a process that has the app's components in hand
    (``known_components`` maps each full name to its config class, or None); raises
    ConfigError listing every error. Warnings are not raised."""
    facts = AppFacts(
        components={name: config is not None for name, config in known_components.items()}
    )
    findings = check_app_config(cfg, facts)
    if findings.errors:
        raise ConfigError("\n".join(findings.errors))


def component_config(
    cls: type[C], section: dict[str, Any] | None, *, file: str, section_name: str
) -> C:
    """The ``weaver.WithConfig`` object of a component: ``cls`` (an attrs class, fields
    with defaults; nested attrs classes are subtables) built from its raw ``section``
    (None = no section: all defaults). Unknown keys, wrong types and missing required
    keys raise ConfigError naming file, section and key path."""
    try:
        return _config_converter().structure(section or {}, cls)
    except Exception as exc:
        problems = cattrs.transform_error(
            exc, path=_section_label(section_name), format_exception=_format_problem
        )
        lines = [_problem_line(file, problem) for problem in problems]
        raise ConfigError("\n".join(lines)) from exc


def _problem_line(file: str, problem: str) -> str:
    message, at, path = problem.rpartition(" @ ")
    return f"{file}: {path}: {message}" if at else f"{file}: {problem}"


def _format_problem(exc: BaseException, tp: type | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        names = ", ".join(repr(key) for key in sorted(exc.extra_fields))
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} {names}"
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, _WrongType):
        return str(exc)
    if isinstance(exc, TypeError | ValueError):
        return f"invalid value: {exc}"
    return cattrs.v.format_exception(exc, tp)


class _WrongType(TypeError):
    pass


_converter: cattrs.Converter | None = None


def _config_converter() -> cattrs.Converter:
    """A converter that refuses to coerce: ``size = "10"`` for an int is an error."""
    global _converter
    if _converter is None:
        converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

        def exact(tp: type, accepted: tuple[type, ...], what: str) -> None:
            def structure(value: Any, _: Any) -> Any:
                if type(value) not in accepted:
                    raise _WrongType(f"expected {what}, got {_kind(value)}")
                return tp(value) if tp is float else value

            converter.register_structure_hook(tp, structure)

        exact(int, (int,), "a whole number")
        exact(float, (float, int), "a number")
        exact(str, (str,), "a string")
        exact(bool, (bool,), "true or false")
        exact(datetime, (datetime,), "a date-time")
        exact(date, (date,), "a date")
        exact(time, (time,), "a time")
        _converter = converter
    return _converter
