"""A deployment's TLS identities, and loading its certificate files into SSL contexts.

With mTLS on, a deployer makes a certificate authority for the deployment (see
:mod:`pyweaver.deployers._ca`) and a certificate per colocation group and one for
itself. Each certificate names who holds it in a URI subject-alternative name:

=========================================  ==========================================
identity                                   held by
=========================================  ==========================================
``pyweaver://DEPLOYMENT/group/GROUP``      every weavelet of the group ``GROUP``
``pyweaver://DEPLOYMENT/deployer``         the deployer's control plane (envelopes)
=========================================  ==========================================

(``GROUP`` is percent-quoted.) A weavelet gets the *paths* of its CA certificate,
certificate and key in its bootstrap, never key material in the environment. Both ends
of every connection present a certificate and verify the other's against the
deployment's CA (TLS 1.3 only); who may then do what is decided by identity: see
``docs/security.md``.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs

from pyweaver.contract._names import MAIN

__all__ = [
    "IDENTITY_SCHEME",
    "TlsFiles",
    "TlsMaterial",
    "callable_components",
    "callers_of",
    "deployer_identity",
    "group_identity",
    "identity_group",
    "is_deployer",
    "write_private",
]

IDENTITY_SCHEME: Final = "pyweaver"


def group_identity(deployment_id: str, group: str) -> str:
    """The identity of the weavelets of ``group``."""
    return f"{IDENTITY_SCHEME}://{deployment_id}/group/{urllib.parse.quote(group, safe='')}"


def deployer_identity(deployment_id: str) -> str:
    """The identity of the deployer's control plane."""
    return f"{IDENTITY_SCHEME}://{deployment_id}/deployer"


def identity_group(identity: str | None, deployment_id: str) -> str | None:
    """The group named by ``identity`` if it is a group identity of ``deployment_id``."""
    if not identity:
        return None
    prefix = f"{IDENTITY_SCHEME}://{deployment_id}/group/"
    if not identity.startswith(prefix):
        return None
    quoted = identity[len(prefix) :]
    if not quoted or "/" in quoted:
        return None
    return urllib.parse.unquote(quoted)


def is_deployer(identity: str | None, deployment_id: str) -> bool:
    return identity == deployer_identity(deployment_id)


@attrs.frozen(kw_only=True)
class TlsFiles:
    """Paths of the PEM files one process of a deployment uses for mTLS.

    Attributes:
        ca: the deployment CA's certificate (what peers are verified against).
        cert: this process's certificate (its identity in a URI SAN).
        key: its private key (a file readable by its owner only).
    """

    ca: str
    cert: str
    key: str

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        context = ssl.SSLContext(
            ssl.PROTOCOL_TLS_SERVER
            if purpose is ssl.Purpose.CLIENT_AUTH
            else ssl.PROTOCOL_TLS_CLIENT
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        # Peers are named by their certificate's URI SAN (checked by the server per
        # identity), not by host names: connections go to Unix sockets and pod IPs.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context

    def server_context(self) -> ssl.SSLContext:
        """For a call server: present our certificate, require and verify the client's."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """For a call client: present our certificate, verify the server's."""
        return self._context(ssl.Purpose.SERVER_AUTH)


def _no_key(value: bytes) -> str:
    return "<private key>"


@attrs.frozen(kw_only=True)
class TlsMaterial:
    """The PEM bytes behind :class:`TlsFiles`, for shipping to another machine (a Ray
    actor's arguments): written to files there with :meth:`write`. The key never
    appears in a repr or a log line."""

    ca: bytes
    cert: bytes
    key: bytes = attrs.field(repr=_no_key)

    def write(self, directory: str | os.PathLike[str], stem: str) -> TlsFiles:
        """Write the three files into ``directory`` (which should be private to this
        user), each readable by its owner only."""
        base = Path(directory)
        paths = {}
        for suffix, data in (("ca.pem", self.ca), ("cert.pem", self.cert), ("key.pem", self.key)):
            path = base / f"{stem}.{suffix}"
            write_private(path, data)
            paths[suffix] = str(path)
        return TlsFiles(ca=paths["ca.pem"], cert=paths["cert.pem"], key=paths["key.pem"])


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start (no window in which the
    file is readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def callable_components(
    groups: Mapping[str, Sequence[str]], edges: Iterable[Sequence[str]]
) -> dict[str, frozenset[str]]:
    """Calling group -> the components its code may call: the targets of the Refs of
    the components it hosts. The group hosting ``main`` may call every component
    (``main`` reaches components through ``weaver.get(Iface, root)``, which no static
    reading of the app sees)."""
    callees: dict[str, set[str]] = {}
    for caller, callee in edges:
        callees.setdefault(caller, set()).add(callee)
    everything = frozenset(c for members in groups.values() for c in members if c != MAIN)
    allowed: dict[str, frozenset[str]] = {}
    for group, members in groups.items():
        if MAIN in members:
            allowed[group] = everything
        else:
            allowed[group] = frozenset(
                target for member in members for target in callees.get(member, ())
            )
    return allowed


def callers_of(
    group: str, groups: Mapping[str, Sequence[str]], edges: Iterable[Sequence[str]]
) -> dict[str, list[str]]:
    """What a weavelet of ``group`` is told: calling group -> the components of
    ``group`` it may call (groups that may call none of them are left out)."""
    hosted = set(groups.get(group, ()))
    callers = {}
    for caller, targets in callable_components(groups, edges).items():
        mine = sorted(targets & hosted)
        if mine:
            callers[caller] = mine
    return callers
