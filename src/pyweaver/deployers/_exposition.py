"""Metric snapshots in the Prometheus and OpenMetrics exposition formats.

A deployer merges its replicas' snapshots (:func:`pyweaver.contract._metrics.merge_snapshots`)
and shows them here, with prometheus-client doing the formatting: a
:class:`SnapshotCollector` turns the samples into prometheus-client ``Metric`` families,
and the library's own encoders render them. The weavelets never see prometheus-client;
their per-call path keeps its plain counters (``pyweaver._runtime._metrics``).

Mapping from snapshot entries (see ``contract._metrics``) to families:

* ``counter`` -> a counter family; following the Prometheus and OpenMetrics naming
  rules, its sample is named ``<name>_total`` (``serviceweaver_method_count`` is
  exposed as ``serviceweaver_method_count_total``; a name already ending in
  ``_total`` is kept as is);
* ``gauge`` -> a gauge family;
* ``histogram`` -> a histogram family with cumulative ``_bucket`` samples (``le`` is
  each upper bound, then ``+Inf``), ``_sum`` and ``_count``.

Entries of one name form one family, in the order they come (merged snapshots are
sorted by name, then labels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, cast

from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pyweaver.contract._metrics import Sample

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "SnapshotCollector",
    "encoder_for",
    "openmetrics_text",
    "prometheus_text",
]

#: The content type of :func:`prometheus_text` (text format version 0.0.4).
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_TOTAL: Final = "_total"

# Two helpers prometheus-client leaves unannotated, with their types.
_float_text = cast(Callable[[float], str], floatToGoString)
_generate_openmetrics = cast(Callable[[Collector], bytes], _openmetrics.generate_latest)


class SnapshotCollector(Collector):
    """A prometheus-client collector over a fixed list of snapshot samples."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._samples = list(samples)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for sample in self._samples:
            kind = sample["kind"]
            name = sample["name"]
            family_name = name.removesuffix(_TOTAL) if kind == "counter" else name
            family = families.get(family_name)
            if family is None:
                family = families[family_name] = Metric(family_name, sample["help"], kind)
            labels: dict[str, str] = dict(sample["labels"])
            if kind == "histogram":
                cumulative = 0
                for bound, count in zip(sample["bounds"], sample["counts"], strict=False):
                    cumulative += count
                    le = {**labels, "le": _float_text(bound)}
                    family.add_sample(f"{name}_bucket", le, cumulative)
                family.add_sample(f"{name}_bucket", {**labels, "le": "+Inf"}, sample["count"])
                family.add_sample(f"{name}_sum", labels, sample["sum"])
                family.add_sample(f"{name}_count", labels, sample["count"])
            elif kind == "counter":
                family.add_sample(family_name + _TOTAL, labels, sample["value"])
            else:
                family.add_sample(name, labels, sample["value"])
        yield from families.values()


def prometheus_text(samples: Iterable[Sample]) -> str:
    """The samples in the Prometheus text format 0.0.4 (:data:`PROMETHEUS_CONTENT_TYPE`)."""
    return generate_latest(SnapshotCollector(samples)).decode()


def openmetrics_text(samples: Iterable[Sample]) -> str:
    """The samples in the OpenMetrics text format (ends with ``# EOF``)."""
    return _generate_openmetrics(SnapshotCollector(samples)).decode()


def encoder_for(accept: str) -> tuple[Callable[[Iterable[Sample]], bytes], str]:
    """What to answer an HTTP scrape whose ``Accept`` header is ``accept``: an encoder
    of samples, and its content type (OpenMetrics when asked for, else Prometheus
    text), as prometheus-client negotiates it."""
    encode, content_type = choose_encoder(accept)

    def encoder(samples: Iterable[Sample]) -> bytes:
        return encode(SnapshotCollector(samples))

    return encoder, content_type
