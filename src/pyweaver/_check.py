"""``pyweaver check``: validate an app without running it and describe its graph.

The app is imported in a child process with a timeout (an app may hang or crash at
import): :func:`pyweaver.contract._appfacts.describe_app` runs this module as
``python -m pyweaver._check --describe OUT TARGET [CONFIG]``, and the child writes the
app's description (components, listeners, the problems of its code and of its
``WithConfig`` sections, the graph as text) to ``OUT`` as JSON. The parent checks
weaver.toml against it with :func:`~pyweaver.contract._config.check_app_config`, the
same check every deployer runs before it starts anything.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from pyweaver._errors import PyWeaverError
from pyweaver._runtime._registry import Registry
from pyweaver.contract._appfacts import (
    DEFAULT_IMPORT_TIMEOUT,
    app_target,
    describe_app,
)
from pyweaver.contract._config import (
    AppConfig,
    AppFacts,
    check_app_config,
    component_config,
    load_config,
)

__all__ = ["CheckReport", "check_app"]


class CheckReport:
    """The outcome of checking one app: its graph, every error and every warning."""

    def __init__(
        self,
        *,
        graph: str,
        mermaid: str,
        components: int,
        config: AppConfig | None,
        errors: list[str],
        warnings: list[str],
    ) -> None:
        self.graph = graph
        self.mermaid_text = mermaid
        self.components = components
        self.config = config
        self.errors = errors
        self.warnings = warnings

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        lines = [self.graph] if self.graph else []
        if self.errors:
            lines.append(f"{len(self.errors)} error(s):")
            lines.extend(f"  error: {error}" for error in self.errors)
        else:
            lines.append(f"ok: {self.components} component(s), no errors")
        return "\n".join(lines)

    def mermaid(self) -> str:
        return self.mermaid_text


def check_app(target: str, *, timeout: float = DEFAULT_IMPORT_TIMEOUT) -> CheckReport:
    """Import ``target`` (a script, a module, or a weaver.toml naming one) in a child
    process (at most ``timeout`` seconds) and validate every component, method, type,
    router, Ref, listener and config section. Raises ConfigError for a malformed
    weaver.toml, or when the app cannot be imported (or hangs at import)."""
    config: AppConfig | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    if target.endswith(".toml"):
        config = load_config(target)
        target = app_target(config)
        if config.path is not None:
            cwd = str(config.path.resolve().parent)
        env = {**os.environ, **config.env_vars()}
    description = describe_app(target, config=config, timeout=timeout, cwd=cwd, env=env)
    facts = description.facts
    errors = list(facts.app_errors)
    warnings: list[str] = []
    if config is not None:
        findings = check_app_config(config, facts)
        errors.extend(findings.errors)
        warnings.extend(findings.warnings)
    return CheckReport(
        graph=description.graph,
        mermaid=description.mermaid,
        components=len(facts.components),
        config=config,
        errors=errors,
        warnings=warnings,
    )


# -- the child process ----------------------------------------------------------------


def _describe(target: str, config_path: str | None, name: str | None) -> dict[str, Any]:
    """Import ``target`` here and describe it (runs in the child process); ``name`` is
    how messages name the config file at ``config_path``."""
    from pyweaver._runtime._appload import load_app

    config = load_config(config_path) if config_path else None
    file = name or config_path or "<config>"
    module = load_app(target)
    registry = Registry()
    section_errors: list[str] = []
    if config is not None:
        for component, spec in sorted(registry.specs.items()):
            if spec.config_type is None or component not in config.sections:
                continue
            try:
                component_config(
                    spec.config_type, config.sections[component], file=file, section_name=component
                )
            except PyWeaverError as exc:
                section_errors.append(str(exc))
    files = {getattr(module, "__file__", None)}
    files.update(
        getattr(sys.modules.get(spec.impl.__module__), "__file__", None)
        for spec in registry.specs.values()
    )
    runtime = _listener_calls(sorted(str(f) for f in files if f))
    listeners = None if runtime is None else sorted(set(registry.listeners) | runtime)
    facts = AppFacts(
        components={name: spec.config_type is not None for name, spec in registry.specs.items()},
        listeners=listeners,
        app_errors=list(registry.errors),
        section_errors=section_errors,
        routed=sorted(name for name, spec in registry.specs.items() if spec.router_type),
        listener_fields=dict(sorted(registry.listeners.items())),
        edges=[[caller, callee] for caller, callee in registry.edges()],
    )
    return {"facts": facts.to_json(), "graph": _graph(registry), "mermaid": _mermaid(registry)}


def _listener_calls(files: list[str]) -> set[str] | None:
    """The names of ``listener("name", ...)`` calls in ``files``; None when some call's
    name is not a literal (then which listeners the app uses cannot be told)."""
    names: set[str] = set()
    for file in files:
        try:
            tree = ast.parse(Path(file).read_text(encoding="utf-8"), file)
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called != "listener":
                continue
            arg = (
                node.args[0]
                if node.args
                else next((k.value for k in node.keywords if k.arg == "name"), None)
            )
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            else:
                return None
    return names


def _graph(registry: Registry) -> str:
    lines: list[str] = []
    for name, spec in sorted(registry.specs.items()):
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
    lines.extend("cycle: " + " -> ".join([*c, c[0]]) for c in registry.cycles())
    return "\n".join(lines)


def _mermaid(registry: Registry) -> str:
    ids = {name: f"c{i}" for i, name in enumerate(sorted(registry.specs))}
    lines = ["graph TD"]
    for name, node in ids.items():
        lines.append(f'    {node}["{name}"]')
    for caller, callee in registry.edges():
        if caller in ids and callee in ids:
            lines.append(f"    {ids[caller]} --> {ids[callee]}")
    return "\n".join(lines)


def _type_name(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


_OURS = (str(Path(__file__).resolve().parent), "<frozen ")


def _app_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from the app's first frame on (pyweaver's and importlib's frames cut)."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_OURS):
        first = first.tb_next
    return first or tb


def _child_main(argv: list[str]) -> int:
    """``--describe OUT TARGET [CONFIG]``: exit 0 with the description written to OUT;
    else the app's traceback (or pyweaver's message) on stderr and a non-zero status."""
    if len(argv) not in (3, 5) or argv[0] != "--describe":
        print(
            "usage: python -m pyweaver._check --describe OUT TARGET [CONFIG NAME]",
            file=sys.stderr,
        )
        return 2
    out, target = argv[1], argv[2]
    config_path, name = (argv[3], argv[4]) if len(argv) == 5 else (None, None)
    try:
        description = _describe(target, config_path, name)
    except PyWeaverError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except BaseException as exc:  # the app's own failure at import: its traceback
        traceback.print_exception(type(exc), exc, _app_frames(exc.__traceback__))
        return 1
    Path(out).write_text(json.dumps(description), encoding="utf-8")
    return 0


if __name__ == "__main__":
    status = _child_main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # threads the app started at import must not keep the child alive
