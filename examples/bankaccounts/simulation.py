"""The simulation of bankaccounts (see README.md): ``python simulation.py`` runs it.

A workload of random concurrent transfers between (and outside) the configured
accounts, with 10% of component calls failing the way remote calls do; after every step
the total must be unchanged and no balance negative.
"""

from __future__ import annotations

from pathlib import Path

from app import Bank
from hypothesis import strategies as st

from pyweaver.weavertest import sim

ACCOUNTS = 4
INITIAL = 100
CONFIG = f"""
["app.Accounts"]
accounts = {ACCOUNTS}
initial_balance = {INITIAL}
"""
# Some transfers name an account that does not exist, or more money than there is.
ACCOUNT = st.integers(0, ACCOUNTS)
AMOUNT = st.integers(0, 2 * INITIAL)


class BankWorkload(sim.Workload):
    async def init(self) -> None:
        self.bank = await self.app.get(Bank)

    @sim.operation(src=ACCOUNT, dst=ACCOUNT, amount=AMOUNT)
    async def transfer(self, src: int, dst: int, amount: int) -> None:
        await self.bank.transfer(src, dst, amount)

    @sim.invariant
    async def money_is_conserved(self) -> None:
        balances = await self.bank.balances()
        assert sum(balances) == ACCOUNTS * INITIAL, f"total changed: {balances}"

    @sim.invariant
    async def no_balance_is_negative(self) -> None:
        balances = await self.bank.balances()
        assert min(balances) >= 0, f"negative balance: {balances}"


if __name__ == "__main__":
    # Failing programs are saved here and replayed first on the next run.
    database = Path(__file__).parent / ".sim-db"
    options = sim.Options(examples=500, failure_rate=0.1, database=database)
    sim.run(BankWorkload, config=CONFIG, options=options)
    print(f"{options.examples} simulated programs: money conserved")
