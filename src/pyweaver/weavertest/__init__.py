"""The in-process test harness: run an app's components inside a test.

::

    from pyweaver import weavertest

    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", weavertest.MODES)
    async def test_reverse(mode: str) -> None:
        fakes = [weavertest.fake(Clock, FakeClock())]
        async with weavertest.Runner(mode, config=TOML, fakes=fakes) as app:
            rev = await app.get(Reverser)
            assert await rev.reverse("abc") == "cba"

Modes:
    ``local``: one process, direct calls (what ``python app.py`` does).
    ``rpc``: one process, but every call goes through the real codec and call protocol
    over a loopback socket, and every retriable call runs twice (to flush out methods
    that should be ``@not_retriable``).
    ``multi``: each colocation group in its own child process(es), two replicas each,
    as the multi-process deployer runs them.

Main is never run; the test is the caller. Fakes always live in the test process.
"""

from pyweaver.weavertest._runner import MODES as MODES
from pyweaver.weavertest._runner import Fake as Fake
from pyweaver.weavertest._runner import Runner as Runner
from pyweaver.weavertest._runner import fake as fake

__all__ = ["MODES", "Fake", "Runner", "fake"]
