"""Kubernetes names: DNS-1123 labels made from app, group and listener names.

Kubernetes wants object names that are DNS-1123 labels (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``,
at most 63 characters: Services become DNS names), label values of at most 63
characters from ``[A-Za-z0-9._-]`` that start and end alphanumeric, and container port
names (``IANA_SVC_NAME``) of at most 15 lowercase characters with a letter in them.
Component names (``app.Factorer``) are none of these, so every name is *sanitized*:
lowercased, every run of other characters turned into one ``-``. A name too long for
its limit is cut and ends in ``-`` plus the first hex digits of the SHA-256 of the
untouched input, so the same input always gives the same name and two long names that
share a prefix still differ.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = [
    "DNS1123_LABEL",
    "LABEL_VALUE",
    "PORT_NAME",
    "dns_label",
    "label_value",
    "port_name",
    "short_hash",
]

DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
PORT_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def short_hash(text: str, length: int = 8) -> str:
    """The first ``length`` hex digits of ``text``'s SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _fit(clean: str, original: str, limit: int) -> str:
    if len(clean) <= limit:
        return clean
    suffix = short_hash(original, 6)
    return f"{clean[: limit - len(suffix) - 1].rstrip('-')}-{suffix}"


def dns_label(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label made of ``parts`` joined by ``-`` (see the module docstring)."""
    original = "-".join(part for part in parts if part)
    clean = _NOT_NAME.sub("-", original.lower()).strip("-") or "x"
    return _fit(clean, original, limit)


def label_value(text: str) -> str:
    """``text`` as a label value (at most 63 characters)."""
    clean = _NOT_LABEL.sub("-", text)
    clean = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)
    return _fit(clean, text, 63)


def port_name(text: str) -> str:
    """``text`` as a container port name (at most 15 characters, with a letter)."""
    clean = _NOT_NAME.sub("-", text.lower()).strip("-")
    if not any(c.isalpha() for c in clean):
        clean = f"p-{clean}".rstrip("-")
    return _fit(clean, text, 15)
