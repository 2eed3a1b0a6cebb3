"""Networking helpers both sides use: addresses, listening sockets, ASGI serving.

A bottom room: it imports only :mod:`pyweaver._errors`, and every other room may
import it.
"""

from pyweaver._net._address import bind_socket as bind_socket
from pyweaver._net._address import format_address as format_address
from pyweaver._net._address import parse_address as parse_address
from pyweaver._net._asgi import ASGIApp as ASGIApp
from pyweaver._net._asgi import Message as Message
from pyweaver._net._asgi import Receive as Receive
from pyweaver._net._asgi import Scope as Scope
from pyweaver._net._asgi import Send as Send
from pyweaver._net._asgi import cancel_on_disconnect as cancel_on_disconnect
from pyweaver._net._asgi import serve_asgi_socket as serve_asgi_socket

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "bind_socket",
    "cancel_on_disconnect",
    "format_address",
    "parse_address",
    "serve_asgi_socket",
]
