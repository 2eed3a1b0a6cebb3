"""Mutual TLS on the call protocol, and authorization by identity (issue 12, item 3).

A deployment's CA and certificates (:mod:`pyweaver.deployers._ca`), then calls over
TLS on every transport and driver: verified both ways, and refused, telling the peer
nothing, when the client has no certificate, one of another CA (another deployment),
an expired one, or asks for a method its identity may not call.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from collections.abc import Set
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509

from pyweaver import call
from pyweaver._errors import RemoteCallError, RetriableError
from pyweaver.contract._tls import (
    TlsFiles,
    deployer_identity,
    group_identity,
    identity_group,
    is_deployer,
)
from pyweaver.deployers._ca import DeploymentCA, DeploymentTls

DEPLOYMENT = "d-tls-1"
FINGERPRINT = b"f" * 8
ALLOWED = call.method_key("app.Cache", "get")
FORBIDDEN = call.method_key("app.Secrets", "read")


async def echo(payload: bytes) -> bytes:
    return payload


@pytest.fixture(scope="module")
def ca() -> DeploymentCA:
    return DeploymentCA.create(DEPLOYMENT)


@pytest.fixture
def tls(ca: DeploymentCA, tmp_path: Path) -> DeploymentTls:
    return ca.write_files(tmp_path / "tls", groups=["main", "app.Cache"])


def authorize_main_only(identity: str | None) -> Set[bytes] | None:
    """The test server's rule: the main group may call ALLOWED only; anyone else nothing."""
    if identity_group(identity, DEPLOYMENT) == "main":
        return frozenset({ALLOWED})
    return frozenset()


@pytest.fixture
def serve_tls(tls: DeploymentTls, server_address: str, driver: Any) -> Any:
    def start(**kwargs: Any) -> Any:
        return call.serve(
            server_address,
            {ALLOWED: echo, FORBIDDEN: echo},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,
            ssl_context=tls.groups["app.Cache"].server_context(),
            authorize=authorize_main_only,
            **kwargs,
        )

    return start


def client(address: str, driver: Any, context: ssl.SSLContext | None, **kwargs: Any) -> call.Client:
    return call.Client(
        [address],
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,
        ssl_context=context,
        replica_wait=kwargs.pop("replica_wait", 5.0),
        **kwargs,
    )


# ------------------------------------------------------------------ certificates


def test_certificates_name_their_holder_and_chain_to_the_ca(
    ca: DeploymentCA, tls: DeploymentTls
) -> None:
    cert = x509.load_pem_x509_certificate(Path(tls.groups["app.Cache"].cert).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [group_identity(DEPLOYMENT, "app.Cache")]
    assert identity_group(uris[0], DEPLOYMENT) == "app.Cache"
    assert identity_group(uris[0], "d-other") is None
    assert cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)
    deployer = x509.load_pem_x509_certificate(Path(tls.deployer.cert).read_bytes())
    value = deployer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert is_deployer(value.get_values_for_type(x509.UniformResourceIdentifier)[0], DEPLOYMENT)
    # EC P-256, short-lived.
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=31)


def test_files_are_private(tls: DeploymentTls) -> None:
    directory = Path(tls.deployer.key).parent
    assert directory.stat().st_mode & 0o777 == 0o700
    for files in [tls.deployer, *tls.groups.values()]:
        for path in (files.ca, files.cert, files.key):
            assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_key_is_never_in_a_repr(ca: DeploymentCA) -> None:
    material = ca.issue_group("main")
    assert b"PRIVATE KEY" in material.key
    assert "PRIVATE" not in repr(material)
    assert material.key.decode() not in repr(material)


def test_group_names_are_quoted_in_identities() -> None:
    identity = group_identity(DEPLOYMENT, "a/b c")
    assert identity_group(identity, DEPLOYMENT) == "a/b c"
    assert identity_group(deployer_identity(DEPLOYMENT), DEPLOYMENT) is None
    assert identity_group(None, DEPLOYMENT) is None


def test_contexts_are_tls_1_3_and_verify_peers(tls: DeploymentTls) -> None:
    for context in (tls.deployer.server_context(), tls.deployer.client_context()):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_3
        assert context.verify_mode is ssl.CERT_REQUIRED


# ------------------------------------------------------------------ calls


@pytest.mark.anyio
async def test_mutual_tls_call_and_authorization(
    serve_tls: Any, tls: DeploymentTls, driver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    main = tls.groups["main"].client_context()
    async with serve_tls(warning_interval=0.0) as server, client(server.address, driver, main) as c:
        with anyio.fail_after(10):
            assert await c.call(ALLOWED, b"hello") == b"hello"
            with (
                caplog.at_level(logging.WARNING, logger="pyweaver.call"),
                pytest.raises(RemoteCallError) as caught,
            ):
                await c.call(FORBIDDEN, b"x")
            # A method the server does not even have gets the same answer.
            with pytest.raises(RemoteCallError) as unknown:
                await c.call(call.method_key("app.Nope", "nope"), b"x")
    assert "not authorized" in str(caught.value)
    assert str(caught.value).replace(FORBIDDEN.hex(), "?") == str(unknown.value).replace(
        call.method_key("app.Nope", "nope").hex(), "?"
    )
    assert DEPLOYMENT not in str(caught.value) or DEPLOYMENT in str(
        group_identity(DEPLOYMENT, "main")
    )
    assert "FINGERPRINT" not in str(caught.value)
    refusals = [r.getMessage() for r in caplog.records if "not authorized" in r.getMessage()]
    assert refusals and FORBIDDEN.hex() in refusals[0] and "main" in refusals[0]


@pytest.mark.anyio
async def test_a_group_outside_the_rule_may_call_nothing(
    serve_tls: Any, tls: DeploymentTls, driver: Any
) -> None:
    cache = tls.groups["app.Cache"].client_context()
    async with serve_tls() as server, client(server.address, driver, cache) as c:
        with anyio.fail_after(10), pytest.raises(RemoteCallError, match="not authorized"):
            await c.call(ALLOWED, b"hello")


def _other_deployment_files(tmp_path: Path) -> TlsFiles:
    return DeploymentCA.create("d-other").write_files(tmp_path / "other", ["main"]).groups["main"]


def _expired_files(ca: DeploymentCA, tmp_path: Path) -> TlsFiles:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    material = ca.issue(group_identity(DEPLOYMENT, "main"), "main", now=long_ago)
    directory = tmp_path / "expired"
    directory.mkdir(mode=0o700)
    return material.write(directory, "main")


def _plain_tls_context() -> ssl.SSLContext:
    """TLS without a client certificate (and trusting any server)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.anyio
@pytest.mark.parametrize("who", ["plain", "no-certificate", "another-deployment", "expired"])
async def test_unauthenticated_clients_are_refused_and_learn_nothing(
    who: str,
    serve_tls: Any,
    ca: DeploymentCA,
    tmp_path: Path,
    driver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context: ssl.SSLContext | None
    if who == "plain":
        context = None
    elif who == "no-certificate":
        context = _plain_tls_context()
    elif who == "another-deployment":
        context = _other_deployment_files(tmp_path).client_context()
    else:
        context = _expired_files(ca, tmp_path).client_context()
    called: list[bytes] = []

    async def spy(payload: bytes) -> bytes:
        called.append(payload)
        return payload

    with caplog.at_level(logging.WARNING, logger="pyweaver.call"):
        async with serve_tls(handshake_timeout=1.0) as server:
            server.handlers[ALLOWED] = spy
            async with client(
                server.address, driver, context, replica_wait=1.0, connect_timeout=2.0
            ) as c:
                with anyio.fail_after(10), pytest.raises(RetriableError) as caught:
                    await c.call(ALLOWED, b"secret")
                assert c.ready == ()
    assert called == []
    text = str(caught.value)
    assert DEPLOYMENT not in text and FINGERPRINT.decode() not in text
    assert "app.Cache" not in text


@pytest.mark.anyio
async def test_the_client_verifies_the_server(
    tls: DeploymentTls, tmp_path: Path, server_address: str, driver: Any
) -> None:
    impostor = _other_deployment_files(tmp_path)
    called: list[bytes] = []

    async def spy(payload: bytes) -> bytes:
        called.append(payload)
        return payload

    async with (
        call.serve(
            server_address,
            {ALLOWED: spy},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,
            ssl_context=impostor.server_context(),
        ) as server,
        client(server.address, driver, tls.groups["main"].client_context(), replica_wait=1.0) as c,
    ):
        with anyio.fail_after(10), pytest.raises(RetriableError):
            await c.call(ALLOWED, b"secret")
    assert called == []
