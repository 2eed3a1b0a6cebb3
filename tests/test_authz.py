"""Authorization with mTLS, at the weavelet and envelope level (issue 12, item 3).

A real weavelet (``serve_weavelet``, in this process) behind a real envelope, both
with the deployment's certificates: the crafted-SHUTDOWN finding (a SHUTDOWN sent to a
weavelet's control socket stopped it) is refused unless it comes with the deployer's
certificate; a group's certificate gets nothing from another envelope's control
channel; and the deployer computes from the call graph which group may call what.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509

from pyweaver import call
from pyweaver._errors import RemoteCallError, RetriableError
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._remote import WeaveletAgent, serve_weavelet
from pyweaver.contract import Bootstrap
from pyweaver.contract import messages as m
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._tls import callable_components, callers_of
from pyweaver.deployers._ca import DeploymentCA, DeploymentTls
from pyweaver.envelope import Envelope, InProcessChild

pytestmark = pytest.mark.anyio

DEPLOYMENT = "d-authz"


class Handler:
    """A deployer that accepts every weavelet."""

    def accept(self, envelope: Envelope, info: m.Register) -> str:
        return ""

    async def activate_component(
        self, envelope: Envelope, request: m.ActivateComponent
    ) -> m.RoutingInfo:
        return m.RoutingInfo(group=request.component, components=[], version=1, replicas={})

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        return m.ListenerAddress(address="127.0.0.1:0")

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        return m.ExportListenerReply(proxy_address="")

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        pass

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None:
        pass


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pwz-") as directory:
        yield Path(directory)


@pytest.fixture
def tls(socket_dir: Path) -> DeploymentTls:
    return DeploymentCA.create(DEPLOYMENT).write_files(socket_dir / "tls", ["app.A", "app.B"])


async def run_weavelet(
    socket_dir: Path, tls: DeploymentTls | None, holder: dict[str, WeaveletAgent]
) -> Envelope:
    async def body(bootstrap: Bootstrap) -> None:
        async with serve_weavelet(
            bootstrap, registry=Registry(), process_logging=False, watch_parent=False
        ) as agent:
            holder["agent"] = agent
            await agent.stopped.wait()

    return Envelope(
        deployment_id=DEPLOYMENT,
        replica_id="a#0",
        group="app.A",
        components=["app.A"],
        run_main=False,
        config=AppConfig(),
        child=InProcessChild(body),
        handler=Handler(),
        socket_dir=socket_dir,
        name="w",
        ready_timeout=10,
        tls=tls.deployer if tls else None,
        weavelet_tls=tls.groups["app.A"] if tls else None,
    )


async def started(holder: dict[str, WeaveletAgent]) -> WeaveletAgent:
    """The agent, once ``serve_weavelet`` has yielded it (just after it registered)."""
    with anyio.fail_after(10):
        while "agent" not in holder:
            await anyio.sleep(0.01)
    return holder["agent"]


def control_client(envelope: Envelope, context: Any, **kwargs: Any) -> call.Client:
    return call.Client(
        [envelope.bootstrap.control_address],
        deployment_id=DEPLOYMENT,
        fingerprint=m.CONTROL_FINGERPRINT,
        ssl_context=context,
        **kwargs,
    )


async def test_shutdown_without_the_deployers_certificate_is_refused(
    socket_dir: Path, tls: DeploymentTls
) -> None:
    holder: dict[str, WeaveletAgent] = {}
    async with await run_weavelet(socket_dir, tls, holder) as envelope:
        agent = await started(holder)
        # Another group's certificate (a compromised weavelet): verified, but refused.
        other = tls.groups["app.B"].client_context()
        async with control_client(envelope, other) as client:
            with anyio.fail_after(10), pytest.raises(RemoteCallError, match="not authorized"):
                await client.call(m.SHUTDOWN.key, m.encode(m.Empty()))
        # Its own group's certificate may not either.
        own = tls.groups["app.A"].client_context()
        async with control_client(envelope, own) as client:
            with anyio.fail_after(10), pytest.raises(RemoteCallError, match="not authorized"):
                await client.call(m.SHUTDOWN.key, m.encode(m.Empty()))
        # No certificate at all: no connection.
        async with control_client(envelope, None, replica_wait=0.5) as client:
            with anyio.fail_after(10), pytest.raises(RetriableError):
                await client.call(m.SHUTDOWN.key, m.encode(m.Empty()))
        assert not agent.stopped.is_set()
        health = await envelope.health()  # the deployer's own certificate works
        assert health.healthy
        await envelope.request_shutdown()  # the deployer's own SHUTDOWN is obeyed
        with anyio.fail_after(10):
            await agent.stopped.wait()


async def test_without_mtls_a_crafted_shutdown_stops_the_weavelet(socket_dir: Path) -> None:
    """The residual risk of ``mtls = false`` (docs/security.md): anyone who can open
    the socket (file permissions: the deployment's user) can stop a weavelet."""
    holder: dict[str, WeaveletAgent] = {}
    async with await run_weavelet(socket_dir, None, holder) as envelope:
        agent = await started(holder)
        async with control_client(envelope, None) as client:
            with anyio.fail_after(10):
                await client.call(m.SHUTDOWN.key, m.encode(m.Empty()))
                await agent.stopped.wait()


async def test_a_weavelet_cannot_use_another_groups_envelope(
    socket_dir: Path, tls: DeploymentTls
) -> None:
    holder: dict[str, WeaveletAgent] = {}
    async with await run_weavelet(socket_dir, tls, holder) as envelope:
        request = m.ActivateComponent(component="app.Secret", routed=False)
        async with call.Client(
            [envelope.envelope_address],
            deployment_id=DEPLOYMENT,
            fingerprint=m.CONTROL_FINGERPRINT,
            ssl_context=tls.groups["app.B"].client_context(),
        ) as client:
            with anyio.fail_after(10), pytest.raises(RemoteCallError, match="not authorized"):
                await client.call(m.ACTIVATE_COMPONENT.key, m.encode(request))


# ------------------------------------------------------------------ the rule


GROUPS = {"main": ["main"], "app.Front": ["app.Front", "app.Cart"], "app.Db": ["app.Db"]}
EDGES = [["app.Front", "app.Db"], ["app.Cart", "app.Db"], ["app.Db", "app.Log"]]


def test_a_group_may_call_what_its_components_reference() -> None:
    allowed = callable_components({**GROUPS, "app.Log": ["app.Log"]}, EDGES)
    assert allowed["app.Front"] == {"app.Db"}
    assert allowed["app.Db"] == {"app.Log"}
    assert allowed["app.Log"] == frozenset()
    # main reaches components through weaver.get(Iface, root): everything.
    assert allowed["main"] == {"app.Front", "app.Cart", "app.Db", "app.Log"}


def test_each_weavelet_learns_who_may_call_it() -> None:
    groups = {**GROUPS, "app.Log": ["app.Log"]}
    assert callers_of("app.Db", groups, EDGES) == {"main": ["app.Db"], "app.Front": ["app.Db"]}
    assert callers_of("app.Front", groups, EDGES) == {"main": ["app.Cart", "app.Front"]}
    assert callers_of("app.Log", groups, EDGES) == {"main": ["app.Log"], "app.Db": ["app.Log"]}


async def test_the_multi_deployer_hands_each_weavelet_its_groups_certificate(
    socket_dir: Path,
) -> None:
    from pyweaver.contract._config import parse_config
    from pyweaver.contract._tls import group_identity
    from pyweaver.deployers.multi._deployer import MultiDeployer
    from pyweaver.deployers.multi._groups import Slot

    config = parse_config(
        '[serviceweaver]\ncolocate = [["app.Front", "app.Cart"]]\n[multi]\nmtls = true\n'
    )
    deployer = MultiDeployer(
        config,
        child_factory=lambda group, run_main: InProcessChild(lambda bootstrap: anyio.sleep(0)),
        socket_dir=socket_dir,
        components=["app.Front", "app.Cart", "app.Db"],
        edges=EDGES[:2],
    )
    envelope = deployer._new_envelope(Slot(deployer._group("app.Db"), 0))
    bootstrap = envelope.bootstrap
    files = bootstrap.tls_files()
    assert files is not None and envelope.tls is not None
    assert bootstrap.tls_callers == {"main": ["app.Db"], "app.Front": ["app.Db"]}
    cert = x509.load_pem_x509_certificate(Path(files.cert).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        group_identity(deployer.deployment_id, "app.Db")
    ]
    for path in (files.ca, files.cert, files.key, envelope.tls.key):
        assert Path(path).stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in Bootstrap.decode(bootstrap.encode()).tls_key.encode()
    # Off by default: no certificates, no TLS.
    plain = MultiDeployer(
        parse_config(""),
        child_factory=lambda group, run_main: InProcessChild(lambda bootstrap: anyio.sleep(0)),
        socket_dir=socket_dir,
    )
    assert plain._new_envelope(Slot(plain._group("main"), 0)).bootstrap.tls_files() is None


def test_mtls_is_on_by_default_where_calls_cross_machines() -> None:
    from pyweaver._errors import ConfigError
    from pyweaver.contract._config import deployer_mtls, parse_config

    assert not parse_config("").multi.mtls
    assert deployer_mtls(parse_config(""), "ray") and deployer_mtls(parse_config(""), "kube")
    assert not deployer_mtls(parse_config("[kube]\nmtls = false\n"), "kube")
    with pytest.raises(ConfigError, match=r"\[ray\] mtls: expected true or false"):
        deployer_mtls(parse_config("[ray]\nmtls = 2\n"), "ray")
