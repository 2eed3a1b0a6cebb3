"""``weaver.init`` and ``weaver.get``.

``init`` starts this process's part of the app. A process started by a deployer (its
bootstrap variable is set) runs the deployed weavelet (:mod:`._remote`); any other runs
every component in this process (:class:`~._placement.SinglePlacement`), configured by
the weaver.toml that ``PYWEAVER_CONFIG`` names, else by defaults. Either way the
weavelet's services run in the process's root task (:mod:`._lifetime`), whose end runs
the components' ``shutdown`` hooks.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.abc

from pyweaver._errors import PyWeaverError
from pyweaver._runtime._component import Instance, full_name
from pyweaver._runtime._lifetime import start_root_task
from pyweaver._runtime._logging import configure_logging
from pyweaver._runtime._placement import SinglePlacement
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._signals import route_sigterm_like_sigint
from pyweaver._runtime._single_status import single_status
from pyweaver._runtime._weavelet import Weavelet
from pyweaver.contract._config import AppConfig, load_config, parse_config
from pyweaver.contract._names import BOOTSTRAP_ENV, CONFIG_ENV

__all__ = ["default_config", "get", "init"]

if TYPE_CHECKING:
    from typing_extensions import TypeForm

T = TypeVar("T")

_process_weavelet: Weavelet | None = None


def default_config() -> AppConfig:
    path = os.environ.get(CONFIG_ENV)
    if path:
        return load_config(path)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or "app"
    name = os.path.basename(main_file).removesuffix(".py")
    return parse_config(f'[serviceweaver]\nname = "{name}"\n', path="<defaults>")


async def init() -> Instance:
    """Start this process's part of the app (see ``weaver.init`` in the docs)."""
    if os.environ.get(BOOTSTRAP_ENV):
        from pyweaver._runtime._remote import run_weavelet

        return await run_weavelet()
    if _process_weavelet is None:
        await start_root_task(_serve_single)
        route_sigterm_like_sigint()
    assert _process_weavelet is not None
    return _process_weavelet.main_instance()


async def _serve_single(
    *, task_status: anyio.abc.TaskStatus[Weavelet] = anyio.TASK_STATUS_IGNORED
) -> None:
    """The single-process weavelet, from ``init`` to the end of the event loop."""
    global _process_weavelet
    config = default_config()
    configure_logging()
    weavelet = Weavelet(Registry(), config, SinglePlacement(config), replica_id="0")
    _process_weavelet = weavelet
    try:
        async with single_status(weavelet):  # `pyweaver single status` sees this process
            task_status.started(weavelet)
            await anyio.sleep_forever()
    finally:
        _process_weavelet = None
        await weavelet.shutdown()


async def get(iface: TypeForm[T], requester: Instance) -> T:
    """The component ``iface`` as seen from ``requester`` (records the call edge)."""
    weavelet = getattr(requester, "_pyweaver_weavelet", None)
    if weavelet is None:
        raise PyWeaverError(
            f"weaver.get({full_name(iface)}, ...): the requester {requester!r} is not a "
            "component or the Instance returned by weaver.init()"
        )
    result: T = await weavelet.get(iface, requester._pyweaver_name)
    return result
