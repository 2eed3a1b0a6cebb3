"""Import an application without running its main: by script path or module name.

A script ``app.py`` is imported as the module ``app`` (its file stem), so its
``if __name__ == "__main__":`` block does not run and its components get the same full
names (``app.Reverser``) as when the script runs as ``__main__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pyweaver._errors import PyWeaverError

__all__ = ["load_app"]


def load_app(target: str) -> ModuleType:
    """Import ``target``: a ``.py`` path or a dotted module name."""
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise PyWeaverError(f"app {target!r}: no such file")
        name = path.stem
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            return existing
        directory = str(path.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PyWeaverError(f"app {target!r}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise PyWeaverError(f"app {target!r}: no such module ({exc})") from exc
