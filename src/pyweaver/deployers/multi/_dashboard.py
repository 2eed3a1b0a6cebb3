"""``pyweaver multi dashboard``: the running multi deployments in a browser.

A small ASGI app (served with ``weaver.serve_asgi``) that asks every live deployment's
status endpoint on each request:

* ``/`` — an HTML page: deployments, then per deployment its groups with replicas,
  pids, states and health, and its listeners with their proxy addresses (it reloads
  itself every few seconds);
* ``/api/status`` — the same as JSON;
* ``/metrics`` — every deployment's metrics in the Prometheus text format (or
  OpenMetrics, when the scraper's ``Accept`` header asks for it).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from pyweaver.deployers._exposition import encoder_for
from pyweaver.deployers._registry import Deployment, Registry
from pyweaver.deployers.multi._status import METRICS, STATUS, fetch_all, status_json

__all__ = ["dashboard_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
th { background: #f3f3f3; }
.ok { color: #17803d; } .bad { color: #b42318; } .dim { color: #777; }
code { font-size: 0.95em; }
"""


def _health(replica: dict[str, Any]) -> str:
    health = replica.get("health") or {}
    if not health:
        return '<span class="dim">-</span>'
    if not health.get("healthy"):
        return '<span class="bad">unhealthy</span>'
    failed = health.get("failed") or {}
    if failed:
        return '<span class="bad">failed: ' + html.escape(", ".join(failed)) + "</span>"
    return '<span class="ok">healthy</span>'


def _page(results: list[tuple[Deployment, Any]]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'><title>pyweaver multi</title>",
        f"<style>{_STYLE}</style></head><body><h1>pyweaver multi</h1>",
    ]
    if not results:
        parts.append("<p>No multi deployments are running.</p></body></html>")
        return "".join(parts)
    parts.append("<h2>Deployments</h2><table><tr><th>app</th><th>deployment</th>")
    parts.append("<th>age</th><th>deployer pid</th><th>config</th></tr>")
    for deployment, _ in results:
        age = int(time.time() - deployment.started)
        parts.append(
            f"<tr><td>{esc(deployment.app)}</td><td><code>{esc(deployment.id)}</code></td>"
            f"<td>{age} s</td><td>{deployment.pid}</td>"
            f"<td><code>{esc(deployment.config_path)}</code></td></tr>"
        )
    parts.append("</table>")
    for deployment, report in results:
        parts.append(f"<h2>{esc(deployment.app)} <code>{esc(deployment.id[:8])}</code></h2>")
        if isinstance(report, Exception):
            parts.append(f'<p class="bad">unreachable: {esc(str(report))}</p>')
            continue
        parts.append("<table><tr><th>group</th><th>components</th><th>replica</th>")
        parts.append("<th>pid</th><th>state</th><th>starts</th><th>health</th></tr>")
        for group in report["groups"]:
            components = "<br>".join(esc(c) for c in group["components"])
            parts.extend(
                f"<tr><td>{esc(group['name'])}</td><td>{components}</td>"
                f"<td>{esc(replica['slot'])}</td><td>{replica['pid'] or '-'}</td>"
                f"<td>{esc(replica['state'])}</td><td>{replica['starts']}</td>"
                f"<td>{_health(replica)}</td></tr>"
                for replica in group["replicas"]
            )
        parts.append("</table>")
        if report["listeners"]:
            parts.append("<table><tr><th>listener</th><th>address</th><th>backends</th></tr>")
            for listener in report["listeners"]:
                backends = "<br>".join(esc(b) for b in listener["backends"]) or "-"
                parts.append(
                    f"<tr><td>{esc(listener['name'])}</td>"
                    f"<td><code>{esc(listener['proxy'])}</code></td><td>{backends}</td></tr>"
                )
            parts.append("</table>")
    parts.append('<p class="dim"><a href="/api/status">JSON</a> · ')
    parts.append('<a href="/metrics">metrics</a></p></body></html>')
    return "".join(parts)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def dashboard_app(root: Path | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The dashboard's ASGI app, over the registry at ``root`` (default: the user's)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if path == "/":
            body = _page(await fetch_all(Registry(root), STATUS)).encode()
            kind = b"text/html; charset=utf-8"
            status = 200
        elif path == "/api/status":
            data = status_json(await fetch_all(Registry(root), STATUS))
            body = json.dumps(data, default=str).encode()
            kind = b"application/json"
            status = 200
        elif path == "/metrics":
            samples: list[dict[str, Any]] = []
            for _, result in await fetch_all(Registry(root), METRICS):
                if not isinstance(result, Exception):
                    samples.extend(result)
            encode, content_type = encoder_for(_header(scope, b"accept"))
            body = encode(samples)
            kind = content_type.encode()
            status = 200
        else:
            body, kind, status = b"not found\n", b"text/plain", 404
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app
