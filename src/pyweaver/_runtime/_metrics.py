"""Metrics: app metrics (``weaver.metrics``), the per-method metrics the component
stubs record, and their export as plain data (a snapshot).

Theory of operation
-------------------
Every metric lives in this process's registry. App code declares metric *families*
at module scope (:class:`Counter`, :class:`Gauge`, :class:`Histogram`); a family
declared with label names hands out one *child* per distinct label values
(``family.labels(a="x")``, cached, so hot code keeps the child). Updates are plain
attribute arithmetic with no locks: pyweaver runs components on one event loop
thread. (Updating one metric from several threads at once may lose an update; use a
lock of your own there.)

Component stubs get a :class:`MethodMetrics` per (caller, component, method,
remote) edge from :func:`method_metrics` once, when the stub is made, and call
:meth:`MethodMetrics.record` on every call. That path must cost tens of
nanoseconds, so it keeps its latency histogram in power-of-two nanosecond buckets
indexed by ``int.bit_length()`` (one C call, no search) and derives the call count
from the histogram instead of keeping a counter (plus the calls a sampling stub
did not time, see :class:`MethodMetrics`). Measured on the project's 2-core machine
(CPython 3.11): ``record`` ~90 ns per call including the call itself (~60 ns above
an empty two-argument call), ``record_bytes`` ~140 ns. The exported buckets are the
matching exact upper bounds in microseconds (``(2**k - 1) / 1000``: 0.127, 0.255,
0.511, 1.023, ... µs), trimmed to a useful range.

Export: :func:`snapshot` returns every metric as CBOR-friendly dicts (one per
family and label set), cumulative since the process started; the format, and how a
deployer merges the snapshots of its replicas, are in ``pyweaver.contract._metrics``.
The Prometheus exposition is the deployer's business (prometheus-client, in
``pyweaver.deployers._exposition``): nothing here builds prometheus-client objects, so
the per-call path stays plain attribute arithmetic.
"""

from __future__ import annotations

import itertools
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from pyweaver._errors import RegistrationError
from pyweaver._runtime._speedups import CallCounter
from pyweaver.contract._metrics import (
    METHOD_BYTES_REPLY,
    METHOD_BYTES_REQUEST,
    METHOD_COUNT,
    METHOD_ERRORS,
    METHOD_HELP,
    METHOD_LATENCY,
    Sample,
    sample_sort_key,
)

__all__ = [
    "GENERATED_BOUNDS",
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "MethodMetrics",
    "method_metrics",
    "reset_for_tests",
    "snapshot",
]

Kind = Literal["counter", "gauge", "histogram"]
LabelValue = str | int | bool

#: Service Weaver's bounds for generated histograms: the 1-2-5 series 1 .. 5e9.
GENERATED_BOUNDS: Final[tuple[float, ...]] = tuple(
    float(mantissa * 10**exponent) for exponent in range(10) for mantissa in (1, 2, 5)
)

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


# -- children: where the numbers live -------------------------------------------------


class CounterChild:
    """A counter's value for one set of label values."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | float = 0

    def add(self, delta: float) -> None:
        """Add ``delta`` (which must not be negative)."""
        if delta < 0:
            raise ValueError(f"a counter cannot decrease (add({delta!r}))")
        self.value += delta

    def inc(self) -> None:
        """Add one."""
        self.value += 1


class GaugeChild:
    """A gauge's value for one set of label values."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | float = 0

    def set(self, value: float) -> None:
        self.value = value

    def add(self, delta: float) -> None:
        self.value += delta

    def sub(self, delta: float) -> None:
        self.value -= delta


class HistogramChild:
    """A histogram's buckets for one set of label values."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: int | float = 0

    def put(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = CounterChild | GaugeChild | HistogramChild


# -- families: the registry ----------------------------------------------------------


@attrs.define(eq=False)
class _Family:
    name: str
    kind: Kind
    help: str
    label_names: tuple[str, ...]
    bounds: tuple[float, ...] | None
    children: dict[tuple[str, ...], Child] = attrs.field(factory=dict)

    def new_child(self) -> Child:
        if self.kind == "counter":
            return CounterChild()
        if self.kind == "gauge":
            return GaugeChild()
        assert self.bounds is not None
        return HistogramChild(self.bounds)


_families: dict[str, _Family] = {}

# Names of the families method_metrics() feeds; they are exported from MethodMetrics
# objects rather than from children, but no app metric may take their names.


def _register(
    name: str,
    kind: Kind,
    help: str,
    labels: Iterable[str],
    bounds: Iterable[float] | None,
) -> _Family:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}: use letters, digits, '_' and ':'")
    if name in METHOD_HELP:
        raise RegistrationError(f"metric name {name!r} is reserved for pyweaver")
    if not isinstance(help, str) or not help.strip():
        raise ValueError(f"metric {name!r}: help text is required")
    if isinstance(labels, str):
        raise TypeError(f"metric {name!r}: labels must be a sequence of names, not a str")
    label_names = tuple(labels)
    for label in label_names:
        if not isinstance(label, str) or not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ValueError(f"metric {name!r}: invalid label name {label!r}")
        if kind == "histogram" and label == "le":
            raise ValueError(f"metric {name!r}: 'le' is reserved in histograms")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"metric {name!r}: duplicate label names in {label_names!r}")
    bound_values: tuple[float, ...] | None = None
    if bounds is not None:
        bound_values = tuple(float(b) for b in bounds)
        if any(math.isnan(b) for b in bound_values) or any(
            a >= b for a, b in itertools.pairwise(bound_values)
        ):
            raise ValueError(f"metric {name!r}: bounds must be strictly increasing numbers")

    existing = _families.get(name)
    if existing is not None:
        if (existing.kind, existing.label_names, existing.bounds) != (
            kind,
            label_names,
            bound_values,
        ):
            raise RegistrationError(
                f"metric {name!r} is already registered as a {existing.kind} with labels "
                f"{existing.label_names!r}"
                + (f" and bounds {existing.bounds!r}" if existing.bounds is not None else "")
            )
        # The same declaration again (a module imported twice, say): share the data.
        return existing
    family = _Family(name, kind, help, label_names, bound_values)
    if not label_names:
        family.children[()] = family.new_child()
    _families[name] = family
    return family


def _label_text(value: LabelValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"label values must be str, int or bool, got {value!r}")


class _Metric:
    __slots__ = ("_family",)

    _family: _Family

    @property
    def name(self) -> str:
        return self._family.name

    @property
    def label_names(self) -> tuple[str, ...]:
        return self._family.label_names

    def _child(self, values: tuple[LabelValue, ...], named: dict[str, LabelValue]) -> Child:
        family = self._family
        names = family.label_names
        if not names:
            raise TypeError(f"metric {family.name!r} has no labels")
        if values and named:
            raise TypeError("pass label values either by position or by name, not both")
        if named:
            if named.keys() != set(names):
                raise TypeError(
                    f"metric {family.name!r} takes labels {names!r}, got {tuple(named)!r}"
                )
            values = tuple(named[label] for label in names)
        elif len(values) != len(names):
            raise TypeError(f"metric {family.name!r} takes labels {names!r}, got {values!r}")
        key = tuple(_label_text(value) for value in values)
        child = family.children.get(key)
        if child is None:
            child = family.children[key] = family.new_child()
        return child

    def _unlabelled(self) -> Child:
        try:
            return self._family.children[()]
        except KeyError:
            raise TypeError(
                f"metric {self._family.name!r} has labels {self._family.label_names!r}: "
                "use .labels(...) first"
            ) from None

    def __repr__(self) -> str:
        family = self._family
        return f"<{type(self).__name__} {family.name!r} labels={family.label_names!r}>"


class Counter(_Metric):
    """A monotonically increasing number: ``add(v)`` (v >= 0) and ``inc()``.

    ``Counter("requests", "Requests served", labels=("path",))`` declares a labelled
    family; ``.labels(path="/")`` returns (and caches) its :class:`CounterChild`.
    """

    __slots__ = ()

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self._family = _register(name, "counter", help, labels, None)

    def labels(self, *values: LabelValue, **named: LabelValue) -> CounterChild:
        child = self._child(values, named)
        assert isinstance(child, CounterChild)
        return child

    def add(self, delta: float) -> None:
        child = self._unlabelled()
        assert isinstance(child, CounterChild)
        child.add(delta)

    def inc(self) -> None:
        self.add(1)

    @property
    def value(self) -> int | float:
        child = self._unlabelled()
        assert isinstance(child, CounterChild)
        return child.value


class Gauge(_Metric):
    """A number that goes up and down: ``set(v)``, ``add(v)``, ``sub(v)``.

    Across replicas, gauges are summed (see ``contract._metrics.merge_snapshots``).
    """

    __slots__ = ()

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self._family = _register(name, "gauge", help, labels, None)

    def labels(self, *values: LabelValue, **named: LabelValue) -> GaugeChild:
        child = self._child(values, named)
        assert isinstance(child, GaugeChild)
        return child

    def _gauge(self) -> GaugeChild:
        child = self._unlabelled()
        assert isinstance(child, GaugeChild)
        return child

    def set(self, value: float) -> None:
        self._gauge().value = value

    def add(self, delta: float) -> None:
        self._gauge().value += delta

    def sub(self, delta: float) -> None:
        self._gauge().value -= delta

    @property
    def value(self) -> int | float:
        return self._gauge().value


class Histogram(_Metric):
    """A distribution: ``put(v)``.

    ``bounds`` are strictly increasing upper bounds; ``n`` bounds make ``n + 1``
    buckets, bucket ``i`` counting ``bounds[i-1] < v <= bounds[i]`` and the last
    counting everything above ``bounds[-1]``.
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        help: str,
        bounds: Sequence[float],
        labels: Sequence[str] = (),
    ) -> None:
        self._family = _register(name, "histogram", help, labels, bounds)

    @property
    def bounds(self) -> tuple[float, ...]:
        assert self._family.bounds is not None
        return self._family.bounds

    def labels(self, *values: LabelValue, **named: LabelValue) -> HistogramChild:
        child = self._child(values, named)
        assert isinstance(child, HistogramChild)
        return child

    def put(self, value: float) -> None:
        child = self._unlabelled()
        assert isinstance(child, HistogramChild)
        child.put(value)


# -- method metrics: the stubs' hot path ----------------------------------------------

# Internal buckets: index k = value.bit_length(), i.e. bucket k holds 2**(k-1) <= v
# <= 2**k - 1 (bucket 0 holds 0). 65 buckets cover every 64-bit value.
_POW2_BUCKETS: Final = 65
# Exported range: latencies from <= 127 ns to <= 2**40 - 1 ns (~18 min), request and
# reply sizes from <= 15 B to <= 2**30 - 1 B (1 GiB); outside values fold into the
# first or the overflow bucket.
_LATENCY_K: Final = range(7, 41)
_BYTES_K: Final = range(4, 31)
_LATENCY_BOUNDS_MICROS: Final[tuple[float, ...]] = tuple((2**k - 1) / 1000 for k in _LATENCY_K)
_BYTES_BOUNDS: Final[tuple[float, ...]] = tuple(float(2**k - 1) for k in _BYTES_K)


def _fold(counts: list[int], exported: range) -> list[int]:
    lo, hi = exported[0], exported[-1]
    return [sum(counts[: lo + 1]), *counts[lo + 1 : hi + 1], sum(counts[hi + 1 :])]


class MethodMetrics(CallCounter):
    """The generated metrics of one (caller, component, method, remote) edge.

    Get one from :func:`method_metrics` when a stub is built, then per call::

        start = time.perf_counter_ns()
        ...  # the call
        mm.record(time.perf_counter_ns() - start, error)
        mm.record_bytes(len(request), len(reply))  # remote calls only

    Reading the clock twice can cost more than recording (about 50 ns per read on
    some VMs), so a stub may time only a sample of calls and count the rest with
    ``mm.untimed_calls += 1`` (plus ``mm.errors += 1`` for a failed one), or
    :meth:`record_untimed`. ``serviceweaver_method_count`` and ``_error_count``
    stay exact; the latency histogram then describes the timed sample (its
    ``count`` is the number of timed calls, and its mean is the sample's mean).
    """

    __slots__ = (
        "caller",
        "component",
        "errors",
        "latency_counts",
        "latency_sum_ns",
        "method",
        "remote",
        "reply_counts",
        "reply_sum",
        "request_counts",
        "request_sum",
        "sample_every",
        "untimed_calls",
    )

    def __init__(self, caller: str, component: str, method: str, remote: bool) -> None:
        self.caller = caller
        self.component = component
        self.method = method
        self.remote = remote
        self.errors = 0
        self.untimed_calls = 0
        # The countdown protocol of sampling stubs: a stub times a call when
        # ``countdown`` is 0 and then sets it to ``sample_every - 1`` (counting the
        # reset); every other call just decrements it. So the untimed calls number
        # exactly ``(sample_every - 1) * countdown_resets - countdown``, and the hot
        # path pays one attribute read and write instead of a counter increment too.
        # (Both live in CallCounter, a C type when the C local stubs are built.)
        self.countdown = 0
        self.countdown_resets = 0
        self.abandoned = 0
        self.sample_every = 1
        self.latency_counts = [0] * _POW2_BUCKETS
        self.latency_sum_ns = 0
        self.request_counts = [0] * _POW2_BUCKETS
        self.request_sum = 0
        self.reply_counts = [0] * _POW2_BUCKETS
        self.reply_sum = 0

    def record(self, latency_ns: int, error: bool) -> None:
        """Record one call that took ``latency_ns`` (a non-negative int)."""
        self.latency_counts[latency_ns.bit_length()] += 1
        self.latency_sum_ns += latency_ns
        if error:
            self.errors += 1

    def record_remote(self, latency_ns: int, request: int, reply: int) -> None:
        """Record one successful remote call: :meth:`record` and :meth:`record_bytes`
        in one call (the remote stubs' success path)."""
        self.latency_counts[latency_ns.bit_length()] += 1
        self.latency_sum_ns += latency_ns
        self.request_counts[request.bit_length()] += 1
        self.request_sum += request
        self.reply_counts[reply.bit_length()] += 1
        self.reply_sum += reply

    def record_untimed(self, error: bool) -> None:
        """Count one call that was not timed."""
        self.untimed_calls += 1
        if error:
            self.errors += 1

    def record_bytes(self, request: int, reply: int) -> None:
        """Record the encoded sizes of a remote call's request and reply."""
        self.request_counts[request.bit_length()] += 1
        self.request_sum += request
        self.reply_counts[reply.bit_length()] += 1
        self.reply_sum += reply

    @property
    def calls(self) -> int:
        return sum(self.latency_counts) + self.untimed_calls + self.counted_down

    @property
    def counted_down(self) -> int:
        """Calls counted by the countdown protocol (see ``__init__``), less those a C
        stub counted down but that were never awaited (``abandoned``)."""
        return (
            (self.sample_every - 1) * self.countdown_resets - self.countdown - self.abandoned
        )

    def _reset(self) -> None:
        self.errors = self.untimed_calls = 0
        self.countdown = self.countdown_resets = self.abandoned = 0
        self.latency_sum_ns = self.request_sum = self.reply_sum = 0
        for counts in (self.latency_counts, self.request_counts, self.reply_counts):
            counts[:] = [0] * _POW2_BUCKETS

    def _samples(self) -> list[Sample]:
        labels = {
            "caller": self.caller,
            "component": self.component,
            "method": self.method,
            "remote": "true" if self.remote else "false",
        }
        calls = self.calls
        samples: list[Sample] = [
            _scalar(METHOD_COUNT, "counter", METHOD_HELP[METHOD_COUNT], labels, calls),
            _scalar(METHOD_ERRORS, "counter", METHOD_HELP[METHOD_ERRORS], labels, self.errors),
            _histogram(
                METHOD_LATENCY,
                METHOD_HELP[METHOD_LATENCY],
                labels,
                bounds=_LATENCY_BOUNDS_MICROS,
                counts=_fold(self.latency_counts, _LATENCY_K),
                total=self.latency_sum_ns / 1000,
            ),
        ]
        if self.remote:
            for name, counts, total in (
                (METHOD_BYTES_REQUEST, self.request_counts, self.request_sum),
                (METHOD_BYTES_REPLY, self.reply_counts, self.reply_sum),
            ):
                samples.append(
                    _histogram(
                        name,
                        METHOD_HELP[name],
                        labels,
                        bounds=_BYTES_BOUNDS,
                        counts=_fold(counts, _BYTES_K),
                        total=total,
                    )
                )
        return samples


_method_metrics: dict[tuple[str, str, str, bool], MethodMetrics] = {}


def method_metrics(caller: str, component: str, method: str, remote: bool) -> MethodMetrics:
    """The (shared, cached) :class:`MethodMetrics` for one call-graph edge."""
    key = (caller, component, method, remote)
    metrics = _method_metrics.get(key)
    if metrics is None:
        metrics = _method_metrics[key] = MethodMetrics(caller, component, method, remote)
    return metrics


def stop_countdowns() -> None:
    """End every sampling countdown now, keeping counts exact, so the very next call
    of every method takes the timed path (used when tracing is turned on: only the
    timed path makes spans)."""
    for metrics in _method_metrics.values():
        metrics.untimed_calls -= metrics.countdown
        metrics.countdown = 0


# -- export ---------------------------------------------------------------------------


def _scalar(name: str, kind: Kind, help: str, labels: dict[str, str], value: int | float) -> Sample:
    return {"name": name, "kind": kind, "help": help, "labels": labels, "value": value}


def _histogram(
    name: str,
    help: str,
    labels: dict[str, str],
    *,
    bounds: Sequence[float],
    counts: list[int],
    total: int | float,
) -> Sample:
    return {
        "name": name,
        "kind": "histogram",
        "help": help,
        "labels": labels,
        "bounds": list(bounds),
        "counts": counts,
        "sum": total,
        "count": sum(counts),
    }


_process_collector: Any = None


def process_samples(labels: Mapping[str, str]) -> list[Sample]:
    """This process's ``process_*`` metrics as prometheus-client's process collector
    reads them (CPU seconds, resident and virtual memory, open and max file
    descriptors, start time; from ``/proc``, so nothing on other systems), each
    labelled with ``labels``. Computed when called: nothing runs between snapshots."""
    global _process_collector
    if _process_collector is None:
        from prometheus_client.process_collector import ProcessCollector

        _process_collector = ProcessCollector(registry=None)
    samples: list[Sample] = []
    for family in _process_collector.collect():
        kind: Kind = "counter" if family.type == "counter" else "gauge"
        samples.extend(
            _scalar(sample.name, kind, family.documentation, dict(labels), float(sample.value))
            for sample in family.samples
        )
    return samples


def snapshot(process_labels: Mapping[str, str] | None = None) -> list[Sample]:
    """Every metric of this process (cumulative), one entry per family and label
    set, sorted by name then labels. Labelled families appear once a child exists.

    With ``process_labels`` (a weavelet passes its group and replica id), the
    ``process_*`` metrics of :func:`process_samples` are included, so that each
    replica's stay apart when a deployer merges snapshots."""
    samples: list[Sample] = []
    if process_labels is not None:
        samples.extend(process_samples(process_labels))
    for family in _families.values():
        for key, child in family.children.items():
            labels = dict(zip(family.label_names, key, strict=True))
            if isinstance(child, HistogramChild):
                samples.append(
                    _histogram(
                        family.name,
                        family.help,
                        labels,
                        bounds=child.bounds,
                        counts=list(child.counts),
                        total=child.sum,
                    )
                )
            else:
                samples.append(_scalar(family.name, family.kind, family.help, labels, child.value))
    for metrics in _method_metrics.values():
        samples.extend(metrics._samples())
    samples.sort(key=sample_sort_key)
    return samples


def reset_for_tests() -> None:
    """Zero every metric in place (declared families, their children and method
    metrics stay registered, so objects held by stubs and modules keep working)."""
    for family in _families.values():
        for child in family.children.values():
            if isinstance(child, HistogramChild):
                child.counts[:] = [0] * len(child.counts)
                child.sum = 0
            else:
                child.value = 0
    for metrics in _method_metrics.values():
        metrics._reset()
