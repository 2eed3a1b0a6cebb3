"""The codec: method arguments, results and exceptions to CBOR bytes and back.

One :class:`Codec` per process judges types (:meth:`Codec.check_type`) and builds one
:class:`MethodCodec` per component method at registration (:meth:`Codec.method_codec`).
Building a method codec compiles its argument and result types into a handful of small
Python functions (generated source, like attrs' and cattrs' own, and like the Go
``weaver generate`` encoders this replaces), so a call does no type dispatch: encoding
is attribute reads plus one ``cbor2.dumps`` (or, for a message of scalars only, the CBOR
heads written by the generated code itself and one join); decoding (for a message of one
``bytes`` or ``str`` value: a check of its heads and one slice) is one strict CBOR
decode (``call.strict_payload_loads``: no semantic tags but bignums) plus inline type
checks and object construction.

Every peer runs the same code (the call handshake checks a schema fingerprint, see
:attr:`MethodCodec.schema`), so values travel positionally, without field names or type
tags. A payload that is not valid CBOR or does not match the types raises
:class:`~pyweaver.RemoteCallError` naming the method and, where it can, the parameter and
field; a value the sender cannot encode does the same on the sending side.

The modules, each importing only those above it:

=================  ======================================================================
``_errors``        the decoding mismatch and the unsupported-type error
``_compile``       compiling generated source; the namespace generated code runs in
``_shapes``        how each kind of type crosses the wire (the CBOR forms, written out)
``_types``         what is serializable and why not: annotation -> shape, cached
``_generate``      a method's entry points: arguments and result messages
``_exceptions``    the exception messages
``_codec``         :class:`Codec` and :class:`MethodCodec`, composing the above
=================  ======================================================================
"""

from pyweaver._runtime._codec._codec import Codec as Codec
from pyweaver._runtime._codec._codec import MethodCodec as MethodCodec

__all__ = ["Codec", "MethodCodec"]
