"""Deterministic simulation: random operations against an app's components, with
injected call failures and seeded interleavings, invariants checked after every step,
failing runs shrunk by hypothesis and saved for replay (Service Weaver's ``sim``).

::

    from hypothesis import strategies as st
    from pyweaver.weavertest import sim

    class BankWorkload(sim.Workload):
        async def init(self) -> None:
            self.bank = await self.app.get(Bank)

        @sim.operation(src=st.integers(0, 3), dst=st.integers(0, 3), amount=st.integers(0, 50))
        async def transfer(self, src: int, dst: int, amount: int) -> None:
            await self.bank.transfer(src, dst, amount)

        @sim.invariant
        async def money_is_conserved(self) -> None:
            assert await self.bank.total() == 400

    def test_bank() -> None:
        sim.run(BankWorkload, options=sim.Options(database="tests/sim-db"))

Requires hypothesis (``pip install pyweaver[sim]``). See docs/sim.md.
"""

from pyweaver.weavertest._sim import (
    Call,
    Options,
    Program,
    Workload,
    invariant,
    operation,
    programs,
    replay,
    run,
)

__all__ = [
    "Call",
    "Options",
    "Program",
    "Workload",
    "invariant",
    "operation",
    "programs",
    "replay",
    "run",
]
