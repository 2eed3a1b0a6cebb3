"""Strict CBOR decoding for everything that comes off the wire.

``cbor2.loads`` gives many CBOR *semantic tags* a meaning of its own, and acts on it
while decoding: tag 35 compiles a regular expression, 36 parses a MIME message, 5
computes ``mantissa * 2 ** exponent`` (an exponent of 10**9 is a memory bomb), 28/29
build shared and cyclic references, 258 builds sets of whatever it is given, and so on.
A peer that has not even completed its handshake could make us do all of that (a 1.9 MB
handshake of tag 35 once froze a deployer's event loop for 4 s). None of pyweaver's
wire formats need those meanings, so every decode of peer bytes goes through a decoder
made here, which refuses every tag except the few it is told to allow:

- :func:`loads`: no tags at all (handshakes, error frames, metadata, control messages).
- :func:`loads_payload`: only bignums (tags 2 and 3), which ``cbor2.dumps`` writes for
  integers beyond 64 bits (the codec's method payloads).
- :func:`decoder` makes others (the bootstrap allows its own datetime tags).

The refusal happens in a ``semantic_decoders`` entry for every tag cbor2 knows (called
with the tag's already-decoded, plain value, before cbor2 does any work of its own on
it) and in ``tag_hook`` for every tag it does not know. cbor2 decodes the plain items
(ints, strings, arrays, maps) in C, and caps nesting at ``max_depth``; the caller caps
the size (frames are capped before they are buffered). Every failure, whatever cbor2
raised, surfaces as :class:`cbor2.CBORDecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Final

import cbor2

__all__ = ["BUILTIN_TAGS", "DecodeError", "decoder", "loads", "loads_payload"]

DecodeError = cbor2.CBORDecodeError

#: The tags cbor2 6's C decoder gives a meaning (and acts on) unless told otherwise:
#: every tag number below 70,000 (and 2**32, 2**64-1) was tried; for all others it
#: calls ``tag_hook``.
BUILTIN_TAGS: Final = frozenset(
    {0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004}
    | {43000, 55799}
)

TagHook = Callable[[cbor2.CBORTag, bool], Any]


def _refuse_builtin(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool) -> Any:
        raise DecodeError(f"CBOR tag {tag} is not allowed here")

    return refuse


def _refuse_unknown(tag: cbor2.CBORTag, immutable: bool) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed here")


def decoder(
    *,
    allow: Collection[int] = (),
    tag_hook: TagHook | None = None,
    max_depth: int = 64,
    strict_keys: bool = False,
) -> Callable[[bytes | bytearray | memoryview], Any]:
    """A ``loads`` that refuses every CBOR tag except ``allow`` (some of
    :data:`BUILTIN_TAGS`, decoded as cbor2 does) and those ``tag_hook`` (called for tags
    cbor2 does not know) accepts. ``strict_keys``: map keys must be text or bytes."""
    unknown = set(allow) - BUILTIN_TAGS
    if unknown:
        raise ValueError(f"not tags cbor2 decodes itself: {sorted(unknown)}; use tag_hook")
    semantic = {tag: _refuse_builtin(tag) for tag in BUILTIN_TAGS - set(allow)}
    hook = tag_hook if tag_hook is not None else _refuse_unknown
    raw_loads = cbor2.loads

    def strict_loads(data: bytes | bytearray | memoryview) -> Any:
        try:
            return raw_loads(
                data,
                semantic_decoders=semantic,
                tag_hook=hook,
                max_depth=max_depth,
                strict_hashable_types=strict_keys,
            )
        except DecodeError:
            raise
        except Exception as exc:  # cbor2 raises several types on garbage
            raise DecodeError(f"not valid CBOR: {exc!r}") from exc

    return strict_loads


#: Decode with no tags at all.
loads: Final = decoder()
#: Decode a method payload: bignums only (nesting as deep as cbor2 allows by default).
loads_payload: Final = decoder(allow={2, 3}, max_depth=400)
