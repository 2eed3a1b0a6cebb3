# The C module _localcall.c; pyweaver imports it through _speedups.py.
from collections.abc import Awaitable, Callable, Generator
from inspect import Signature
from typing import Any

class CallCounter:
    countdown: int
    countdown_resets: int
    abandoned: int

class LocalCall:
    def __await__(self) -> Generator[Any, Any, Any]: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, *args: Any) -> Any: ...
    def close(self) -> None: ...

class LocalMethod:
    bound: Callable[..., Awaitable[Any]]
    __signature__: Signature | None
    __dict__: dict[str, Any]
    def __init__(
        self,
        counter: CallCounter,
        bound: Callable[..., Awaitable[Any]],
        traced: Callable[..., Awaitable[Any]],
        on_error: Callable[[BaseException], object],
        record: Callable[[int, bool], object],
        tracing: object,
        sample_every: int,
        qualname: str,
    ) -> None: ...
    @property
    def __qualname__(self) -> str: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...

class RemoteCall:
    def __await__(self) -> Generator[Any, Any, Any]: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, *args: Any) -> Any: ...
    def close(self) -> None: ...

class RemoteMethod:
    send: Callable[..., Awaitable[bytes]] | None
    __signature__: Signature | None
    __dict__: dict[str, Any]
    def __init__(
        self,
        slow: Callable[..., Awaitable[Any]],
        encode_args: Callable[[tuple[Any, ...]], bytes],
        decode_result: Callable[[bytes], Any],
        record: Callable[[int, bool], object],
        record_remote: Callable[[int, int, int], object],
        tracing: object,
        key: bytes,
        retriable: bool,
        qualname: str,
    ) -> None: ...
    @property
    def __qualname__(self) -> str: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...
