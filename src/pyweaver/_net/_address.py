"""Network addresses: ``host:port`` text parsed and formatted one way everywhere, and
listening sockets bound from it."""

from __future__ import annotations

import socket

from pyweaver._errors import ConfigError

__all__ = ["bind_socket", "format_address", "parse_address"]


def parse_address(address: str, *, what: str = "listener address") -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"``, ``":port"`` or ``""`` -> (host, port)."""
    if not address:
        return "127.0.0.1", 0
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ConfigError(f"{what} {address!r}: expected host:port")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {address!r}: port {port} is out of range")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(address: str, *, what: str) -> socket.socket:
    """A non-blocking TCP socket bound to ``address`` and listening, so the port is
    known and held. ``what`` names the socket in errors (``listener 'hello'``)."""
    host, port = parse_address(address, what=f"{what} address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{what}: cannot bind {address!r}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock
