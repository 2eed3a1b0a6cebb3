"""bankaccounts: transfers between accounts that conserve money under failures.

``Accounts`` holds the balances; ``Bank.transfer`` moves money by asking ``Accounts``
to apply a transfer *identified by an id*. Applying is atomic (no await between debit
and credit) and idempotent (a transfer id applied twice moves money once), so ``Bank``
may retry a call whose reply was lost without creating or destroying money.

``simulation.py`` checks that claim with ``pyweaver.weavertest.sim``: random concurrent
transfers, injected call failures, and the invariant "the total never changes and no
balance goes negative" after every step. Run ``python app.py`` for a few transfers.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import anyio
import attrs

import pyweaver as weaver


class Accounts(Protocol):
    async def apply(self, transfer_id: str, src: int, dst: int, amount: int) -> bool: ...

    async def balances(self) -> list[int]: ...


class Bank(Protocol):
    # Not retriable: run twice, a transfer moves the money twice (each run is a new
    # transfer id). Its call to Accounts.apply is retriable: same id, applied once.
    @weaver.not_retriable
    async def transfer(self, src: int, dst: int, amount: int) -> bool: ...

    async def balances(self) -> list[int]: ...


@attrs.frozen
class AccountsConfig:
    accounts: int = 4
    initial_balance: int = 100


class AccountsImpl(weaver.Implements[Accounts], weaver.WithConfig[AccountsConfig]):
    async def init(self) -> None:
        self._balances = [self.config.initial_balance] * self.config.accounts
        self._applied: dict[str, bool] = {}  # transfer id -> outcome

    async def apply(self, transfer_id: str, src: int, dst: int, amount: int) -> bool:
        if transfer_id in self._applied:  # a retry of a transfer already applied
            return self._applied[transfer_id]
        accounts = range(len(self._balances))
        done = src in accounts and dst in accounts and 0 <= amount <= self._balances[src]
        if done:
            self._balances[src] -= amount
            self._balances[dst] += amount
        self._applied[transfer_id] = done
        return done

    async def balances(self) -> list[int]:
        return list(self._balances)


class BankImpl(weaver.Implements[Bank]):
    accounts: weaver.Ref[Accounts]

    async def init(self) -> None:
        self._ids = itertools.count()

    async def transfer(self, src: int, dst: int, amount: int) -> bool:
        transfer_id = f"{self.weaver_info.replica_id}-{next(self._ids)}"
        for _attempt in range(4):
            try:
                return await self.accounts.get().apply(transfer_id, src, dst, amount)
            except weaver.RemoteCallError:
                continue  # safe: apply is idempotent per transfer id
        return await self.accounts.get().apply(transfer_id, src, dst, amount)

    async def balances(self) -> list[int]:
        return await self.accounts.get().balances()


async def main() -> None:
    root = await weaver.init()
    bank = await weaver.get(Bank, root)
    for src, dst, amount in [(0, 1, 30), (1, 2, 50), (2, 3, 500), (3, 0, 10)]:
        ok = await bank.transfer(src, dst, amount)
        print(f"transfer {amount} from {src} to {dst}: {'done' if ok else 'refused'}")
    print("balances:", await bank.balances())


if __name__ == "__main__":
    anyio.run(main)
