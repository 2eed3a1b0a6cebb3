"""The colocation argument, in Python: the collatz example's work in one process, in
multi with everything colocated, with Odd+Even colocated apart from main, and with one
process per component.

Each configuration computes Collatz sequences (x = 1, 2, 3, ...) for a fixed time
through the example's real components (``examples/collatz/app.py``), one component call
per step, and reports microseconds per step. The multi configurations run the app with
``weavertest.Runner("multi")``, which places groups exactly as ``pyweaver multi deploy``
does (the benchmark process plays main). Prints one JSON line ``{"rows": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "examples" / "collatz" / "app.py"

CONFIGS: dict[str, tuple[str, str]] = {
    # name: (weavertest mode, weaver.toml text)
    "single-process": ("local", ""),
    "multi-all-colocated": (
        "multi",
        '[serviceweaver]\ncolocate = [["main", "app.Odd", "app.Even"]]\n',
    ),
    "multi-odd-even-colocated": (
        "multi",
        '[serviceweaver]\ncolocate = [["app.Odd", "app.Even"]]\n'
        "[multi.replicas]\ndefault = 1\n",
    ),
    "multi-process-per-component": ("multi", "[multi.replicas]\ndefault = 1\n"),
}


async def measure(name: str, seconds: float, batches: int) -> dict[str, Any]:
    from pyweaver import weavertest
    from pyweaver._runtime._appload import load_app

    app_module = load_app(str(APP))
    mode, config = CONFIGS[name]
    async with weavertest.Runner(mode, config=config, app=str(APP)) as app:
        odd = await app.get(app_module.Odd)
        even = await app.get(app_module.Even)
        await app_module.sequence(27, odd, even)  # warm up connections and builds
        samples: list[float] = []
        x = 1
        for _ in range(batches):
            steps = 0
            start = time.perf_counter()
            deadline = start + seconds / batches
            while time.perf_counter() < deadline:
                steps += len(await app_module.sequence(x, odd, even)) - 1
                x = x % 1000 + 1
            samples.append((time.perf_counter() - start) * 1e6 / max(steps, 1))
    return {
        "us_per_step": statistics.median(samples),
        "batch_min_us": min(samples),
        "batch_max_us": max(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="per configuration")
    parser.add_argument("--only", default="", help="substring of the configurations to run")
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    for name in CONFIGS:
        if args.only not in name:
            continue
        try:
            rows[name] = anyio.run(measure, name, args.seconds, 5)
        except Exception as exc:  # reported, not fatal: the other rows still count
            rows[name] = {"failed": repr(exc)}
    sys.stdout.write(json.dumps({"rows": rows}) + "\n")


if __name__ == "__main__":
    main()
