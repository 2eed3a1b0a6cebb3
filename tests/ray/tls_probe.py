"""Probe a weavelet's data port as a peer that does not belong: ``python -m
tests.ray.tls_probe HOST:PORT`` prints one JSON line (run inside a netns host).

- ``plain``: a plain TCP client that sends call-protocol-looking bytes; what it got
  back (hex, at most 64 bytes) — a server that speaks mTLS answers with nothing or a
  TLS alert record (first byte 0x15), never a call-protocol frame.
- ``tls_speaks``: whether a TLS 1.3 handshake without a client certificate completes
  (the server presents its certificate; it verifies ours only afterwards);
  ``server_identity``: the URI SAN of the server's certificate.
- ``no_cert_read``: what reading after that handshake gives: the server's refusal
  (``"refused: ..."``) or data (``"data: ..."``).
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from typing import Any

from cryptography import x509

_TIMEOUT = 10.0


def _split(address: str) -> tuple[str, int]:
    address = address.removeprefix("tcp://")
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def probe(address: str) -> dict[str, Any]:
    host, port = _split(address)
    result: dict[str, Any] = {}
    with socket.create_connection((host, port), timeout=_TIMEOUT) as plain:
        plain.sendall(b"\x00\x00\x00\x20" + b"\xa2ddeployment" + b"\x00" * 40)
        received = b""
        try:
            while len(received) < 64:
                chunk = plain.recv(64)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass
        result["plain"] = received[:64].hex()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=_TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                result["tls_speaks"] = True
                der = tls.getpeercert(binary_form=True)
                identity = ""
                if der:
                    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                        x509.SubjectAlternativeName
                    )
                    identity = ",".join(
                        san.value.get_values_for_type(x509.UniformResourceIdentifier)
                    )
                result["server_identity"] = identity
                try:
                    tls.sendall(b"\x00\x00\x00\x04ping")
                    data = tls.recv(64)
                    result["no_cert_read"] = f"data: {data.hex()}" if data else "refused: eof"
                except (ssl.SSLError, OSError) as exc:
                    result["no_cert_read"] = f"refused: {exc}"
        except (ssl.SSLError, OSError) as exc:
            result["tls_speaks"] = False
            result["tls_error"] = str(exc)
    return result


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])), flush=True)
