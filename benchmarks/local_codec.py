"""In-process: pyweaver's codec vs pickle on a medium attrs message, encode + decode.

The message is the research's "medium" one (research/peer-baselines.md): ten
fields (int, str, float, bool, list[str], float, str, int, dict[str, str]) and
a list of 20 ``Item(x: int, y: float, label: str)``, both attrs classes deriving
from ``weaver.AutoMarshal`` as an application's messages do (plain attrs classes
with ``Codec(plain_attrs=True)`` if that is unavailable; the output names the class
used).  One round trip is one encode plus one decode:
    pyweaver-codec          MethodCodec.encode_args((m,)) then decode_args(...)
                            (the request path of a call taking one Medium)
    pyweaver-codec-result   encode_result(m) then decode_result(...) (information)
    pickle                  pickle.loads(pickle.dumps(m, protocol=5)) of the same object
Pickle is a yardstick here only; nothing in pyweaver puts it on a wire.
Batches alternate (3 per row after calibration); each row reports the median
batch (us per round trip), the batch min..max, and the encoded size.

usage: local_codec.py [--seconds S]
prints {"rows": {"pickle": {...}, "pyweaver-codec": {...} or {"missing": why}, ...}}
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

BATCHES = 3


@attrs.frozen(kw_only=True)
class Item:
    x: int
    y: float
    label: str


@attrs.frozen(kw_only=True)
class Medium:
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


def medium(item_cls: Any = Item, medium_cls: Any = Medium) -> Any:
    return medium_cls(
        id=123456, name="component-alpha", score=0.875, active=True,
        tags=["red", "green", "blue", "prod", "eu-west"], created=1732500000.25,
        owner="team-weaver", count=20, meta={"a": "1", "b": "2", "c": "3"},
        items=[item_cls(x=i, y=i * 1.5, label=f"item-{i}") for i in range(20)],
    )


# The same two classes deriving from weaver.AutoMarshal, for a codec that asks for it.
# Module level, so pickle can find them too.
try:
    try:
        from pyweaver import AutoMarshal
    except ImportError:  # not re-exported yet: the class itself is what matters here
        from pyweaver._automarshal import AutoMarshal

    @attrs.frozen(kw_only=True)
    class AMItem(AutoMarshal):
        x: int
        y: float
        label: str

    @attrs.frozen(kw_only=True)
    class AMMedium(AutoMarshal):
        id: int
        name: str
        score: float
        active: bool
        tags: list[str]
        created: float
        owner: str
        count: int
        meta: dict[str, str]
        items: list[AMItem]

    AUTOMARSHAL: tuple[Any, Any] | None = (AMItem, AMMedium)
except ImportError:
    AUTOMARSHAL = None


def method_codec(codec: Any, medium_cls: Any) -> Any:
    """The codec's per-method codec for ``async def m(self, x: Medium) -> Medium``."""
    where = "local_codec.Bench.roundtrip"
    attempts: list[Callable[[], Any]] = [
        lambda: codec.method_codec([medium_cls], medium_cls, where, arg_names=["message"]),
        lambda: codec.method_codec([medium_cls], medium_cls, where),
        lambda: codec.method_codec(arg_types=[medium_cls], result_type=medium_cls),
    ]
    first_error: Exception | None = None
    for attempt in attempts:
        try:
            return attempt()
        except TypeError as exc:  # another signature; try the next spelling
            first_error = first_error or exc
    raise first_error or TypeError("method_codec")


def pyweaver_cases() -> tuple[dict[str, Callable[[], object]], dict[str, Any], Any]:
    """(round-trip functions, sizes, the message they carry); raises if the codec is absent.

    An application's messages are AutoMarshal classes, so those go first; plain attrs
    classes (with ``Codec(plain_attrs=True)``, pyweaver's own messages) are the fallback.
    """
    from pyweaver._codec import Codec

    errors = []
    choices: list[tuple[Any, Any, Callable[[], Any]]] = []
    if AUTOMARSHAL is not None:
        choices.append((*AUTOMARSHAL, Codec))
    choices.append((Item, Medium, lambda: Codec(plain_attrs=True)))
    for item_cls, medium_cls, make_codec in choices:
        try:
            mc = method_codec(make_codec(), medium_cls)
            message = medium(item_cls, medium_cls)
            args = (message,)
            request = mc.encode_args(args)
            decoded = mc.decode_args(request)
            if list(decoded) != [message]:
                raise RuntimeError(f"decode_args(encode_args(m)) != (m,): {decoded!r:.200}")
            response = mc.encode_result(message)
            if mc.decode_result(response) != message:
                raise RuntimeError("decode_result(encode_result(m)) != m")
        except Exception as exc:
            errors.append(f"{medium_cls.__qualname__}: {exc!r}")
            continue
        encode_args, decode_args = mc.encode_args, mc.decode_args
        encode_result, decode_result = mc.encode_result, mc.decode_result
        cases = {
            "pyweaver-codec": lambda: decode_args(encode_args(args)),
            "pyweaver-codec-result": lambda: decode_result(encode_result(message)),
        }
        sizes = {"pyweaver-codec": len(request), "pyweaver-codec-result": len(response)}
        return cases, sizes, message
    raise RuntimeError("; ".join(errors))


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
    cases: dict[str, Callable[[], object]] = {}
    sizes: dict[str, int] = {}
    message: Any = medium()
    try:
        cases, sizes, message = pyweaver_cases()
    except ImportError as exc:
        rows["pyweaver-codec"] = {"missing": f"pyweaver._codec unavailable: {exc!r}"}
    except Exception as exc:
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
