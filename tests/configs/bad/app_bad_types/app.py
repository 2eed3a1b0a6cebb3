from collections.abc import Callable
from typing import Protocol

import pyweaver as weaver


class Scheduler(Protocol):
    async def schedule(self, job: Callable[[], None]) -> None: ...


class SchedulerImpl(weaver.Implements[Scheduler]):
    async def schedule(self, job: Callable[[], None]) -> None:
        pass
