"""``weaver.metrics``: metrics an application declares, aggregated across replicas
by the deployer and shown by ``pyweaver <deployer> metrics`` and the dashboard.

Declare metrics at module scope; names must be Prometheus-safe and unique, and
``help`` is required::

    from pyweaver import metrics

    requests = metrics.Counter("cache_requests", "Cache requests", labels=("hit",))
    size = metrics.Gauge("cache_size", "Items in the cache")
    latency = metrics.Histogram("cache_latency_ms", "Lookup latency", bounds=[1, 10, 100])

    requests.labels(hit=True).inc()   # label values: str, int or bool
    size.set(42)
    latency.put(3.5)

Across replicas, counters and histograms are summed, and so are gauges.
"""

from pyweaver._runtime._metrics import (
    Counter,
    CounterChild,
    Gauge,
    GaugeChild,
    Histogram,
    HistogramChild,
)

__all__ = ["Counter", "CounterChild", "Gauge", "GaugeChild", "Histogram", "HistogramChild"]
