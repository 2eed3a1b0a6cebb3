"""The metric snapshot: how a weavelet hands its metrics to a deployer, and what the
deployer does with the snapshots of many replicas.

A snapshot is a list of CBOR-friendly dicts, one per metric family and label set,
cumulative since the process started. A deployer collects a snapshot per replica,
combines them with :func:`merge_snapshots`, optionally adds identifying labels
(:func:`add_labels`), and shows them: :func:`method_summaries` for tables, the
Prometheus exposition formats for scrapers (``pyweaver.deployers._exposition``).

Snapshot entry formats::

    {"name": str, "kind": "counter" | "gauge", "help": str,
     "labels": {str: str}, "value": int | float}
    {"name": str, "kind": "histogram", "help": str, "labels": {str: str},
     "bounds": [float, ...], "counts": [int, ...],   # len(counts) == len(bounds) + 1
     "sum": int | float, "count": int}

Histogram bucket ``i`` counts values ``v`` with ``bounds[i-1] < v <= bounds[i]``
(the last one: ``v > bounds[-1]``), which is Prometheus' ``le`` convention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

__all__ = [
    "METHOD_BYTES_REPLY",
    "METHOD_BYTES_REQUEST",
    "METHOD_COUNT",
    "METHOD_ERRORS",
    "METHOD_HELP",
    "METHOD_LATENCY",
    "MethodSummary",
    "Sample",
    "add_labels",
    "merge_snapshots",
    "method_summaries",
    "sample_sort_key",
]

Sample = dict[str, Any]

METHOD_COUNT: Final = "serviceweaver_method_count"
METHOD_ERRORS: Final = "serviceweaver_method_error_count"
METHOD_LATENCY: Final = "serviceweaver_method_latency_micros"
METHOD_BYTES_REQUEST: Final = "serviceweaver_method_bytes_request"
METHOD_BYTES_REPLY: Final = "serviceweaver_method_bytes_reply"
METHOD_HELP: Final[dict[str, str]] = {
    METHOD_COUNT: "Count of Service Weaver component method invocations",
    METHOD_ERRORS: "Count of Service Weaver component method invocations that result in an error",
    METHOD_LATENCY: "Duration, in microseconds, of Service Weaver component method execution",
    METHOD_BYTES_REQUEST: "Number of bytes in Service Weaver component method requests",
    METHOD_BYTES_REPLY: "Number of bytes in Service Weaver component method replies",
}


def sample_sort_key(sample: Sample) -> tuple[str, list[tuple[str, str]]]:
    return sample["name"], sorted(sample["labels"].items())


def merge_snapshots(snapshots: Iterable[Sequence[Sample]]) -> list[Sample]:
    """Combine the snapshots of several replicas into one.

    Entries with the same name and labels are added up: counters and histograms
    (bucket by bucket, plus sum and count) because they count events, and gauges
    too, so a gauge reads as the total over replicas (e.g. items cached by all
    replicas); set a per-replica label (see :func:`add_labels`) before merging if
    you want gauges kept apart. Raises ``ValueError`` when replicas disagree on a
    metric's kind or histogram bounds (different app versions).
    """
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for samples in snapshots:
        for sample in samples:
            key = (sample["name"], tuple(sorted(sample["labels"].items())))
            into = merged.get(key)
            if into is None:
                copy = dict(sample)
                copy["labels"] = dict(sample["labels"])
                if sample["kind"] == "histogram":
                    copy["bounds"] = list(sample["bounds"])
                    copy["counts"] = list(sample["counts"])
                merged[key] = copy
                continue
            if into["kind"] != sample["kind"]:
                raise ValueError(
                    f"metric {sample['name']!r} is a {into['kind']} in one snapshot "
                    f"and a {sample['kind']} in another"
                )
            if sample["kind"] == "histogram":
                if list(into["bounds"]) != list(sample["bounds"]):
                    raise ValueError(f"histogram {sample['name']!r} has different bounds")
                into["counts"] = [
                    a + b for a, b in zip(into["counts"], sample["counts"], strict=True)
                ]
                into["sum"] += sample["sum"]
                into["count"] += sample["count"]
            else:
                into["value"] += sample["value"]
    return sorted(merged.values(), key=sample_sort_key)


def add_labels(samples: Iterable[Sample], labels: Mapping[str, str]) -> list[Sample]:
    """Copies of ``samples`` with extra labels (e.g. ``serviceweaver_app``,
    ``serviceweaver_node``); a sample's own label wins over an added one."""
    return [{**sample, "labels": {**labels, **sample["labels"]}} for sample in samples]


@attrs.frozen(kw_only=True)
class MethodSummary:
    """Totals for one component method over all its callers (status pages, tables)."""

    component: str
    method: str
    calls: int
    errors: int
    latency_sum_micros: float
    latency_count: int  # timed calls (all of them unless the stub samples)
    request_bytes: int  # remote calls only
    reply_bytes: int

    @property
    def mean_latency_micros(self) -> float:
        return self.latency_sum_micros / self.latency_count if self.latency_count else 0.0


def method_summaries(samples: Iterable[Sample]) -> list[MethodSummary]:
    """Per-(component, method) totals from a (merged) snapshot, sorted by name.
    Subtract two of them taken a minute apart for per-minute rates."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    fields = {
        METHOD_COUNT: ("calls", "value"),
        METHOD_ERRORS: ("errors", "value"),
        METHOD_LATENCY: ("latency_sum_micros", "sum"),
        METHOD_BYTES_REQUEST: ("request_bytes", "sum"),
        METHOD_BYTES_REPLY: ("reply_bytes", "sum"),
    }
    for sample in samples:
        field = fields.get(sample["name"])
        if field is None:
            continue
        labels = sample["labels"]
        key = (labels.get("component", ""), labels.get("method", ""))
        entry = totals.setdefault(
            key,
            {
                "calls": 0,
                "errors": 0,
                "latency_sum_micros": 0.0,
                "latency_count": 0,
                "request_bytes": 0,
                "reply_bytes": 0,
            },
        )
        entry[field[0]] += sample[field[1]]
        if sample["name"] == METHOD_LATENCY:
            entry["latency_count"] += sample["count"]
    return [
        MethodSummary(component=component, method=method, **entry)
        for (component, method), entry in sorted(totals.items())
    ]
