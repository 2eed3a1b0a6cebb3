"""``pyweaver check``: validate an app without running it and describe its graph."""

from __future__ import annotations

import json
import sys
from typing import Any

from pyweaver._errors import ConfigError, PyWeaverError
from pyweaver._runtime._registry import Registry
from pyweaver.contract._config import AppConfig, check_sections, component_config, load_config

__all__ = ["CheckReport", "check_app", "describe_main"]


class CheckReport:
    """The outcome of checking one app: its registry and every error found."""

    def __init__(self, registry: Registry, config: AppConfig | None, errors: list[str]) -> None:
        self.registry = registry
        self.config = config
        self.errors = errors

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        lines: list[str] = []
        for name, spec in sorted(self.registry.specs.items()):
            implementation = f"{spec.impl.__module__}.{spec.impl.__qualname__}"
            lines.append(f"component {name}  (implemented by {implementation})")
            for method in spec.methods.values():
                params = ", ".join(f"{p}: {_type_name(t)}" for p, t in method.params)
                flags = [] if method.retriable else ["not retriable"]
                if method.router is not None:
                    flags.append("routed")
                suffix = f"  [{', '.join(flags)}]" if flags else ""
                lines.append(f"  {method.name}({params}) -> {_type_name(method.result)}{suffix}")
            lines.extend(f"  ref {attr} -> {target}" for attr, target in sorted(spec.refs.items()))
            lines.extend(f"  listener {listener}" for listener in spec.listeners)
            if spec.config_type is not None:
                lines.append(f"  config {spec.config_type.__qualname__}")
        lines.extend("cycle: " + " -> ".join([*c, c[0]]) for c in self.registry.cycles())
        if self.errors:
            lines.append(f"{len(self.errors)} error(s):")
            lines.extend(f"  error: {error}" for error in self.errors)
        else:
            lines.append(f"ok: {len(self.registry.specs)} component(s), no errors")
        return "\n".join(lines)

    def mermaid(self) -> str:
        ids = {name: f"c{i}" for i, name in enumerate(sorted(self.registry.specs))}
        lines = ["graph TD"]
        for name, node in ids.items():
            lines.append(f'    {node}["{name}"]')
        for caller, callee in self.registry.edges():
            if caller in ids and callee in ids:
                lines.append(f"    {ids[caller]} --> {ids[callee]}")
        return "\n".join(lines)


def _type_name(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def check_app(target: str) -> CheckReport:
    """Import ``target`` (a script, a module, or a weaver.toml naming one) and validate
    every component, method, type, router, Ref, listener and config section."""
    from pyweaver._runtime._appload import load_app

    config: AppConfig | None = None
    errors: list[str] = []
    if target.endswith(".toml"):
        config = load_config(target)
        script = config.binary_path()
        if script is not None:
            target = str(script)
        elif config.module:
            target = config.module
        else:
            raise ConfigError(f"{config.path}: [serviceweaver] names neither binary nor module")
    load_app(target)
    registry = Registry()
    errors.extend(registry.errors)
    if config is not None:
        try:
            check_sections(
                config, {name: spec.config_type for name, spec in registry.specs.items()}
            )
        except PyWeaverError as exc:
            errors.append(str(exc))
        for name, spec in sorted(registry.specs.items()):
            if spec.config_type is None or name not in config.sections:
                continue
            try:
                component_config(
                    spec.config_type,
                    config.sections[name],
                    file=str(config.path),
                    section_name=name,
                )
            except PyWeaverError as exc:
                errors.append(str(exc))
        known = {name for group in config.colocate for name in group}
        errors.extend(
            f"{config.path}: [serviceweaver] colocate names unknown component {name}"
            for name in sorted(known - set(registry.specs) - {"main"})
        )
        # Listeners asked for at run time (await self.listener(name)) are not known
        # here; configured names are checked only against declared listener fields.
        declared = ", ".join(sorted(registry.listeners))
        errors.extend(
            f"{config.path}: listener {listener!r} is configured but no component declares it "
            f"(declared: {declared})"
            for section in (config.single.listeners, config.multi.listeners)
            for listener in sorted(section)
            if registry.listeners and listener not in registry.listeners
        )
    return CheckReport(registry, config, errors)


def describe_main(argv: list[str] | None = None) -> None:
    """``python -m pyweaver._check APP``: what a deployer must know of an app (its
    components, routed components, declared listeners and errors) as JSON on stdout.

    Deployers may not import the app-side runtime; they run this in a subprocess."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m pyweaver._check APP")
    try:
        description = describe(args[0])
    except PyWeaverError as exc:
        sys.exit(str(exc))
    sys.stdout.write(json.dumps(description) + "\n")


def describe(target: str) -> dict[str, Any]:
    """What ``python -m pyweaver._check`` prints for ``target``, as a dict."""
    report = check_app(target)
    specs = report.registry.specs
    return {
        "components": sorted(specs),
        "routed": sorted(name for name, spec in specs.items() if spec.router_type is not None),
        "listeners": dict(sorted(report.registry.listeners.items())),
        "errors": list(report.errors),
    }


if __name__ == "__main__":
    describe_main()
