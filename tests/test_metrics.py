"""Metrics: app metric families and children, the registry's rules, the stubs'
MethodMetrics, snapshots, merging across replicas, and the Prometheus and OpenMetrics
exposition (parsed back with prometheus-client's own parsers)."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import parser as prometheus_parser
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser

import pyweaver.metrics as weaver_metrics
from pyweaver._errors import RegistrationError
from pyweaver._runtime import _metrics
from pyweaver._runtime._metrics import (
    GENERATED_BOUNDS,
    Counter,
    Gauge,
    Histogram,
    method_metrics,
    snapshot,
)
from pyweaver.contract._metrics import add_labels, merge_snapshots, method_summaries
from pyweaver.deployers._exposition import (
    PROMETHEUS_CONTENT_TYPE,
    encoder_for,
    openmetrics_text,
    prometheus_text,
)

# prometheus-client leaves its text parsers unannotated.
text_string_to_metric_families = cast(
    Callable[[str], Iterator[Metric]], prometheus_parser.text_string_to_metric_families
)
parse_openmetrics = cast(
    Callable[[str], Iterator[Metric]], openmetrics_parser.text_string_to_metric_families
)

_names = itertools.count()


def fresh(prefix: str) -> str:
    """A metric name no other test uses (the registry is process-wide)."""
    return f"test_metrics_{prefix}_{next(_names)}"


def find(name: str, **labels: str) -> dict[str, Any]:
    matches = [s for s in snapshot() if s["name"] == name and s["labels"] == labels]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_public_module_exports_the_three_kinds() -> None:
    assert weaver_metrics.Counter is Counter
    assert weaver_metrics.Gauge is Gauge
    assert weaver_metrics.Histogram is Histogram


def test_counter_without_labels() -> None:
    name = fresh("requests")
    counter = Counter(name, "Requests")
    counter.inc()
    counter.add(2.5)
    assert counter.value == 3.5
    assert find(name) == {
        "name": name,
        "kind": "counter",
        "help": "Requests",
        "labels": {},
        "value": 3.5,
    }
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.add(-1)


def test_gauge_set_add_sub() -> None:
    gauge = Gauge(fresh("size"), "Size")
    gauge.set(10)
    gauge.add(5)
    gauge.sub(7)
    assert gauge.value == 8
    assert find(gauge.name)["kind"] == "gauge"


def test_histogram_buckets_are_upper_inclusive() -> None:
    histogram = Histogram(fresh("latency"), "Latency", bounds=[1, 10, 100])
    for value in (0, 1, 1.5, 10, 11, 100, 1000):
        histogram.put(value)
    sample = find(histogram.name)
    assert sample["bounds"] == [1.0, 10.0, 100.0]
    # (-inf, 1], (1, 10], (10, 100], (100, inf)
    assert sample["counts"] == [2, 2, 2, 1]
    assert sample["count"] == 7
    assert sample["sum"] == 0 + 1 + 1.5 + 10 + 11 + 100 + 1000


def test_labelled_children_are_cached_and_values_stringified() -> None:
    counter = Counter(fresh("hits"), "Hits", labels=("path", "hit", "shard"))
    child = counter.labels(path="/a", hit=True, shard=3)
    assert counter.labels(path="/a", hit=True, shard=3) is child
    assert counter.labels("/a", True, 3) is child  # positional, in declared order
    child.inc()
    counter.labels(path="/b", hit=False, shard=3).add(2)
    assert find(counter.name, path="/a", hit="true", shard="3")["value"] == 1
    assert find(counter.name, path="/b", hit="false", shard="3")["value"] == 2


def test_label_misuse_is_reported() -> None:
    counter = Counter(fresh("labelled"), "Labelled", labels=("a",))
    with pytest.raises(TypeError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(TypeError, match="takes labels"):
        counter.labels(b="x")
    with pytest.raises(TypeError, match="takes labels"):
        counter.labels("x", "y")
    with pytest.raises(TypeError, match="not both"):
        counter.labels("x", a="x")
    with pytest.raises(TypeError, match="str, int or bool"):
        counter.labels(a=1.5)  # type: ignore[arg-type]
    plain = Counter(fresh("plain"), "Plain")
    with pytest.raises(TypeError, match="has no labels"):
        plain.labels(a="x")
    assert not [s for s in snapshot() if s["name"] == counter.name]  # no child yet


@pytest.mark.parametrize(
    ("name", "labels", "error"),
    [
        ("has-dash", (), "invalid metric name"),
        ("9starts_with_digit", (), "invalid metric name"),
        ("ok", ("bad-label",), "invalid label name"),
        ("ok", ("__reserved",), "invalid label name"),
        ("ok", ("a", "a"), "duplicate label"),
    ],
)
def test_invalid_names_are_rejected(name: str, labels: tuple[str, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Counter(name, "Help", labels=labels)


def test_help_is_required_and_labels_must_not_be_a_string() -> None:
    with pytest.raises(ValueError, match="help text is required"):
        Counter(fresh("nohelp"), "")
    with pytest.raises(TypeError, match="not a str"):
        Counter(fresh("strlabels"), "Help", labels="ab")


def test_histogram_bounds_and_le_label_are_checked() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(fresh("h"), "H", bounds=[1, 1])
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(fresh("h"), "H", bounds=[2, 1])
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(fresh("h"), "H", bounds=[math.nan])
    with pytest.raises(ValueError, match="'le' is reserved"):
        Histogram(fresh("h"), "H", bounds=[1], labels=("le",))


def test_redeclaring_a_name_shares_or_conflicts() -> None:
    name = fresh("shared")
    first = Counter(name, "Shared")
    second = Counter(name, "Shared")  # e.g. a module imported under two names
    first.inc()
    second.inc()
    assert find(name)["value"] == 2
    with pytest.raises(RegistrationError, match="already registered as a counter"):
        Gauge(name, "Shared")
    with pytest.raises(RegistrationError, match="already registered"):
        Counter(name, "Shared", labels=("a",))
    histogram_name = fresh("shared_histogram")
    Histogram(histogram_name, "H", bounds=[1, 2])
    with pytest.raises(RegistrationError, match="bounds"):
        Histogram(histogram_name, "H", bounds=[1, 3])


def test_method_metric_names_are_reserved() -> None:
    with pytest.raises(RegistrationError, match="reserved"):
        Counter("serviceweaver_method_count", "Mine")


def test_method_metrics_local_call() -> None:
    mm = method_metrics("test.Caller", "test.LocalCallee", "run", False)
    assert method_metrics("test.Caller", "test.LocalCallee", "run", False) is mm
    before = mm.calls
    mm.record(1_500, False)  # 1.5 µs
    mm.record(2_000_000, True)  # 2 ms
    labels = {
        "caller": "test.Caller",
        "component": "test.LocalCallee",
        "method": "run",
        "remote": "false",
    }
    assert find("serviceweaver_method_count", **labels)["value"] == before + 2
    assert find("serviceweaver_method_error_count", **labels)["value"] >= 1
    latency = find("serviceweaver_method_latency_micros", **labels)
    assert latency["sum"] >= 2001.5
    bounds, counts = latency["bounds"], latency["counts"]
    assert len(counts) == len(bounds) + 1
    # Each observation sits in the bucket whose (exact, upper-inclusive) bound covers it.
    for micros in (1.5, 2000.0):
        index = next(i for i, bound in enumerate(bounds) if micros <= bound)
        assert counts[index] >= 1
        assert index == 0 or bounds[index - 1] < micros
    # Local calls have no byte histograms.
    assert not [
        s
        for s in snapshot()
        if s["name"].startswith("serviceweaver_method_bytes") and s["labels"] == labels
    ]


def test_untimed_calls_are_counted_but_not_timed() -> None:
    mm = method_metrics("test.Caller", "test.SampledCallee", "run", False)
    mm.record(8_000, False)
    mm.untimed_calls += 1  # the stub's inline fast path
    mm.record_untimed(True)
    labels = {
        "caller": "test.Caller",
        "component": "test.SampledCallee",
        "method": "run",
        "remote": "false",
    }
    assert find("serviceweaver_method_count", **labels)["value"] == 3
    assert find("serviceweaver_method_error_count", **labels)["value"] == 1
    latency = find("serviceweaver_method_latency_micros", **labels)
    assert latency["count"] == 1 and latency["sum"] == 8.0
    summaries = [s for s in method_summaries(snapshot()) if s.component == "test.SampledCallee"]
    assert [(s.calls, s.errors, s.latency_count, s.mean_latency_micros) for s in summaries] == [
        (3, 1, 1, 8.0)
    ]


def test_method_metrics_remote_call_bytes() -> None:
    mm = method_metrics("test.Caller", "test.RemoteCallee", "run", True)
    mm.record(10_000, False)
    mm.record_bytes(100, 5000)
    labels = {
        "caller": "test.Caller",
        "component": "test.RemoteCallee",
        "method": "run",
        "remote": "true",
    }
    request = find("serviceweaver_method_bytes_request", **labels)
    reply = find("serviceweaver_method_bytes_reply", **labels)
    assert request["sum"] >= 100
    assert reply["sum"] >= 5000
    # Byte bounds are exact: 2**k - 1.
    assert 127.0 in request["bounds"]
    assert request["counts"][request["bounds"].index(127.0)] >= 1  # 64 <= 100 <= 127


@given(st.integers(min_value=0, max_value=2**62))
def test_method_latency_bucket_matches_exported_bounds(latency_ns: int) -> None:
    mm = _metrics.MethodMetrics("c", "x", "m", False)
    mm.record(latency_ns, False)
    (latency,) = (s for s in mm._samples() if s["name"].endswith("latency_micros"))
    index = latency["counts"].index(1)
    micros = latency_ns / 1000
    bounds = latency["bounds"]
    if index < len(bounds):
        assert micros <= bounds[index]
    if index > 0:
        assert micros > bounds[index - 1]


def test_snapshot_is_sorted_plain_data() -> None:
    samples = snapshot()
    keys = [(s["name"], sorted(s["labels"].items())) for s in samples]
    assert keys == sorted(keys)
    allowed = (str, int, float, bool, list, dict)

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, allowed)

    assert all(plain(sample) for sample in samples)


def test_merge_sums_counters_gauges_and_histograms() -> None:
    replica_a = [
        {"name": "c", "kind": "counter", "help": "C", "labels": {"x": "1"}, "value": 2},
        {"name": "g", "kind": "gauge", "help": "G", "labels": {}, "value": 5},
        {
            "name": "h",
            "kind": "histogram",
            "help": "H",
            "labels": {},
            "bounds": [1.0, 2.0],
            "counts": [1, 0, 2],
            "sum": 7.0,
            "count": 3,
        },
    ]
    replica_b = [
        {"name": "c", "kind": "counter", "help": "C", "labels": {"x": "1"}, "value": 3},
        {"name": "c", "kind": "counter", "help": "C", "labels": {"x": "2"}, "value": 1},
        {"name": "g", "kind": "gauge", "help": "G", "labels": {}, "value": -1},
        {
            "name": "h",
            "kind": "histogram",
            "help": "H",
            "labels": {},
            "bounds": [1.0, 2.0],
            "counts": [0, 1, 0],
            "sum": 1.5,
            "count": 1,
        },
    ]
    merged = merge_snapshots([replica_a, replica_b])
    assert [(s["name"], s["labels"]) for s in merged] == [
        ("c", {"x": "1"}),
        ("c", {"x": "2"}),
        ("g", {}),
        ("h", {}),
    ]
    assert merged[0]["value"] == 5
    assert merged[1]["value"] == 1
    assert merged[2]["value"] == 4
    assert merged[3]["counts"] == [1, 1, 2]
    assert merged[3]["sum"] == 8.5
    assert merged[3]["count"] == 4
    assert replica_a[2]["counts"] == [1, 0, 2]  # inputs untouched

    conflicting = [dict(replica_b[3], bounds=[1.0, 3.0])]
    with pytest.raises(ValueError, match="different bounds"):
        merge_snapshots([replica_a, conflicting])
    with pytest.raises(ValueError, match="is a counter in one snapshot"):
        merge_snapshots([replica_a, [dict(replica_a[0], kind="gauge")]])


def test_add_labels_keeps_the_samples_own() -> None:
    samples = [{"name": "c", "kind": "counter", "help": "C", "labels": {"a": "own"}, "value": 1}]
    labelled = add_labels(samples, {"a": "added", "serviceweaver_node": "n1"})
    assert labelled[0]["labels"] == {"a": "own", "serviceweaver_node": "n1"}
    assert samples[0]["labels"] == {"a": "own"}


EXPOSITION_SAMPLES: list[dict[str, Any]] = [
    {
        "name": "requests",
        "kind": "counter",
        "help": 'Requests \\ "served"\nsecond line',
        "labels": {"path": 'a"b\\c\nd'},
        "value": 3,
    },
    {"name": "requests", "kind": "counter", "help": "x", "labels": {"path": "/"}, "value": 1.5},
    {"name": "temperature", "kind": "gauge", "help": "T", "labels": {}, "value": math.inf},
    {
        "name": "latency",
        "kind": "histogram",
        "help": "L",
        "labels": {"m": "get"},
        "bounds": [0.5, 2.0],
        "counts": [1, 2, 3],
        "sum": 12.25,
        "count": 6,
    },
    {"name": "jobs_total", "kind": "counter", "help": "J", "labels": {}, "value": 2},
]


def parsed(families: Any) -> dict[str, tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
    """name -> (type, help, [(sample name, labels, value)]) of parsed exposition text."""
    return {
        family.name: (
            family.type,
            family.documentation,
            [(s.name, s.labels, s.value) for s in family.samples],
        )
        for family in families
    }


EXPECTED_FAMILIES = {
    "requests": (
        "counter",
        'Requests \\ "served"\nsecond line',
        [
            ("requests_total", {"path": 'a"b\\c\nd'}, 3.0),
            ("requests_total", {"path": "/"}, 1.5),
        ],
    ),
    "temperature": ("gauge", "T", [("temperature", {}, math.inf)]),
    "latency": (
        "histogram",
        "L",
        [
            ("latency_bucket", {"m": "get", "le": "0.5"}, 1.0),
            ("latency_bucket", {"m": "get", "le": "2.0"}, 3.0),
            ("latency_bucket", {"m": "get", "le": "+Inf"}, 6.0),
            ("latency_sum", {"m": "get"}, 12.25),
            ("latency_count", {"m": "get"}, 6.0),
        ],
    ),
    "jobs": ("counter", "J", [("jobs_total", {}, 2.0)]),
}


def test_prometheus_text_parses_back() -> None:
    text = prometheus_text(EXPOSITION_SAMPLES)
    assert parsed(text_string_to_metric_families(text)) == EXPECTED_FAMILIES
    # Escapes as the text format wants them, counters named *_total.
    assert '# HELP requests_total Requests \\\\ "served"\\nsecond line\n' in text
    assert "# TYPE requests_total counter\n" in text
    assert 'requests_total{path="a\\"b\\\\c\\nd"} 3.0\n' in text
    assert "temperature +Inf\n" in text
    assert prometheus_text([]) == ""


def test_openmetrics_text_parses_back() -> None:
    text = openmetrics_text(EXPOSITION_SAMPLES)
    assert text.endswith("# EOF\n")
    assert parsed(parse_openmetrics(text)) == EXPECTED_FAMILIES


def test_encoder_for_negotiates_the_format() -> None:
    encode, content_type = encoder_for("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert encode(EXPOSITION_SAMPLES).decode() == openmetrics_text(EXPOSITION_SAMPLES)
    encode, content_type = encoder_for("")
    assert content_type == PROMETHEUS_CONTENT_TYPE
    assert encode(EXPOSITION_SAMPLES).decode() == prometheus_text(EXPOSITION_SAMPLES)


def test_prometheus_text_of_a_live_snapshot_parses_back() -> None:
    name = fresh("text")
    Histogram(name, "Text", bounds=GENERATED_BOUNDS).put(3)
    method_metrics("test.Caller", "test.TextCallee", "run", True).record(1000, False)
    samples = snapshot()
    for text, parse in (
        (prometheus_text(samples), text_string_to_metric_families),
        (openmetrics_text(samples), parse_openmetrics),
    ):
        families = {family.name: family for family in parse(text)}
        count = families["serviceweaver_method_count"]
        assert count.type == "counter"
        (calls,) = [
            s
            for s in count.samples
            if s.labels["component"] == "test.TextCallee" and s.labels["remote"] == "true"
        ]
        assert calls.name == "serviceweaver_method_count_total" and calls.value == 1
        histogram = families[name]
        assert histogram.type == "histogram"
        buckets = {s.labels["le"]: s.value for s in histogram.samples if s.name.endswith("_bucket")}
        assert (buckets["2.0"], buckets["5.0"], buckets["+Inf"]) == (0, 1, 1)
        assert len(buckets) == len(GENERATED_BOUNDS) + 1


def test_method_summaries() -> None:
    def sample(name: str, caller: str, **values: Any) -> dict[str, Any]:
        labels = {"caller": caller, "component": "app.Cache", "method": "get", "remote": "true"}
        return {"name": name, "kind": "x", "help": "", "labels": labels, **values}

    samples = [
        sample("serviceweaver_method_count", "a", value=3),
        sample("serviceweaver_method_count", "b", value=1),
        sample("serviceweaver_method_error_count", "a", value=1),
        sample("serviceweaver_method_latency_micros", "a", sum=40.0, count=4),
        sample("serviceweaver_method_bytes_request", "a", sum=100, count=3),
        sample("serviceweaver_method_bytes_reply", "a", sum=900, count=3),
        {"name": "unrelated", "kind": "counter", "help": "", "labels": {}, "value": 1},
    ]
    (summary,) = method_summaries(samples)
    assert (summary.component, summary.method) == ("app.Cache", "get")
    assert (summary.calls, summary.errors) == (4, 1)
    assert summary.latency_count == 4
    assert summary.mean_latency_micros == 10.0
    assert (summary.request_bytes, summary.reply_bytes) == (100, 900)


def test_reset_for_tests_zeroes_in_place() -> None:
    counter = Counter(fresh("reset"), "Reset", labels=("a",))
    child = counter.labels(a="x")
    child.add(3)
    histogram = Histogram(fresh("reset_h"), "Reset", bounds=[1])
    histogram.put(5)
    mm = method_metrics("test.Caller", "test.ResetCallee", "run", True)
    mm.record(100, True)
    mm.record_bytes(1, 2)
    mm.record_untimed(False)
    _metrics.reset_for_tests()
    assert child.value == 0
    assert find(histogram.name)["counts"] == [0, 0]
    assert mm.calls == 0 and mm.errors == 0 and mm.request_sum == 0 and mm.untimed_calls == 0
    child.inc()  # objects held before the reset keep working
    assert find(counter.name, a="x")["value"] == 1


def test_process_metrics_join_a_snapshot_only_when_asked() -> None:
    take = _metrics.snapshot
    assert not any(s["name"].startswith("process_") for s in take())
    labels = {"serviceweaver_group": "main", "serviceweaver_node": "r1"}
    process = {
        s["name"]: s for s in take(process_labels=labels) if s["name"].startswith("process_")
    }
    if sys.platform != "linux":
        pytest.skip("prometheus-client reads process metrics from /proc")
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= set(process)
    assert process["process_cpu_seconds_total"]["kind"] == "counter"
    assert process["process_resident_memory_bytes"]["kind"] == "gauge"
    assert process["process_resident_memory_bytes"]["value"] > 1_000_000
    assert all(s["labels"] == labels for s in process.values())
    text = prometheus_text(list(process.values()))
    assert 'process_open_fds{serviceweaver_group="main",serviceweaver_node="r1"}' in text
