"""In-process: pyweaver's codec vs pickle on a medium attrs message, encode + decode.

The message is the research's "medium" one (research/peer-baselines.md): ten
fields (int, str, float, bool, list[str], float, str, int, dict[str, str]) and
a list of 20 ``Item(x: int, y: float, label: str)``, both attrs classes deriving
from ``weaver.AutoMarshal`` as an application's messages do.  One round trip is one
encode plus one decode:
    pyweaver-codec          MethodCodec.encode_args((m,)) then decode_args(...)
                            (the request path of a call taking one Medium)
    pyweaver-codec-result   encode_result(m) then decode_result(...) (information)
    pickle                  pickle.loads(pickle.dumps(m, protocol=5)) of the same object
Pickle is a yardstick here only; nothing in pyweaver puts it on a wire.
Batches alternate (3 per row after calibration); each row reports the median
batch (us per round trip), the batch min..max, and the encoded size.

usage: local_codec.py [--seconds S]
prints {"rows": {"pickle": {...}, "pyweaver-codec": {...}, ...}}
"""

from __future__ import annotations

import argparse
import json
import pickle  # noqa: TID251 -- a yardstick in a benchmark, never on a wire
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from pyweaver import AutoMarshal
from pyweaver._runtime._codec import Codec

BATCHES = 3


@attrs.frozen(kw_only=True)
class Item(AutoMarshal):
    x: int
    y: float
    label: str


@attrs.frozen(kw_only=True)
class Medium(AutoMarshal):
    id: int
    name: str
    score: float
    active: bool
    tags: list[str]
    created: float
    owner: str
    count: int
    meta: dict[str, str]
    items: list[Item]


def medium() -> Medium:
    return Medium(
        id=123456, name="component-alpha", score=0.875, active=True,
        tags=["red", "green", "blue", "prod", "eu-west"], created=1732500000.25,
        owner="team-weaver", count=20, meta={"a": "1", "b": "2", "c": "3"},
        items=[Item(x=i, y=i * 1.5, label=f"item-{i}") for i in range(20)],
    )


def pyweaver_cases(message: Medium) -> tuple[dict[str, Callable[[], object]], dict[str, int]]:
    """Round-trip functions for ``async def m(self, message: Medium) -> Medium``, and
    the encoded sizes; checks first that both round trips are lossless."""
    mc = Codec().method_codec([Medium], Medium, "local_codec.Bench.roundtrip", arg_names=["message"])
    args = (message,)
    request = mc.encode_args(args)
    if list(mc.decode_args(request)) != [message]:
        raise RuntimeError("decode_args(encode_args(m)) != (m,)")
    response = mc.encode_result(message)
    if mc.decode_result(response) != message:
        raise RuntimeError("decode_result(encode_result(m)) != m")
    encode_args, decode_args = mc.encode_args, mc.decode_args
    encode_result, decode_result = mc.encode_result, mc.decode_result
    cases: dict[str, Callable[[], object]] = {
        "pyweaver-codec": lambda: decode_args(encode_args(args)),
        "pyweaver-codec-result": lambda: decode_result(encode_result(message)),
    }
    return cases, {"pyweaver-codec": len(request), "pyweaver-codec-result": len(response)}


def time_batch(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def calibrate(fn: Callable[[], object], batch_s: float) -> int:
    n = 100
    while True:
        us = time_batch(fn, n)
        if us * n > 20_000 or n >= 10_000_000:
            return max(100, int(batch_s * 1e6 / us))
        n *= 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    message = medium()
    try:
        cases, sizes = pyweaver_cases(message)
    except Exception as exc:
        cases, sizes = {}, {}
        rows["pyweaver-codec"] = {"failed": f"codec round trip failed: {exc}"}
    # Pickle the very object the codec carries (same classes), so only the codec differs.
    if pickle.loads(pickle.dumps(message, protocol=5)) != message:
        raise SystemExit("pickle round trip is not lossless")
    cases = {"pickle": lambda: pickle.loads(pickle.dumps(message, protocol=5)), **cases}
    sizes["pickle"] = len(pickle.dumps(message, protocol=5))
    batch_s = args.seconds / (len(cases) * BATCHES + len(cases))
    counts = {name: calibrate(fn, batch_s) for name, fn in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(BATCHES):
        for name, fn in cases.items():
            samples[name].append(time_batch(fn, counts[name]))
    for name, values in samples.items():
        rows[name] = {"us_per_round_trip": statistics.median(values), "batch_min_us": min(values),
                      "batch_max_us": max(values), "bytes": sizes[name]}
    sys.stdout.write(json.dumps({"rows": rows, "message_class": type(message).__qualname__}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
