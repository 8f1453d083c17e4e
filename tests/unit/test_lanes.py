"""``db.lanes.Lane``: results, errors, cancellation, coalesced wake-ups, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from banatie_local.db.lanes import Lane


def test_results_and_errors_reach_the_awaiting_coroutine() -> None:
    lane = Lane(2, "t")

    def boom() -> None:
        raise ValueError("no")

    async def main() -> None:
        assert await lane.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ValueError, match="no"):
            await lane.run(boom)
        names = await asyncio.gather(
            *(lane.run(lambda: threading.current_thread().name) for _ in range(20))
        )
        assert set(names) <= {"t_0", "t_1"}

    asyncio.run(main())
    lane.shutdown()


def test_results_finished_while_the_loop_is_busy_arrive_in_one_wake_up() -> None:
    lane = Lane(1, "t")
    wakes = 0

    async def main() -> None:
        nonlocal wakes
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counting(callback, *args):  # type: ignore[no-untyped-def]
            nonlocal wakes
            wakes += 1
            return real(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        futures = [lane.run(lambda n=n: n) for n in range(50)]
        time.sleep(0.3)  # the loop is blocked while the thread finishes every job
        assert await asyncio.gather(*futures) == list(range(50))

    asyncio.run(main())
    lane.shutdown()
    assert wakes == 1


def test_a_job_cancelled_before_it_starts_does_not_run() -> None:
    lane = Lane(1, "t")
    gate = threading.Event()
    ran: list[int] = []

    async def main() -> None:
        first = lane.run(gate.wait, 5)
        second = lane.run(ran.append, 1)
        second.cancel()
        gate.set()
        assert await first is True
        assert await lane.run(lambda: "after") == "after"

    asyncio.run(main())
    lane.shutdown()
    assert ran == []


def test_a_failed_initializer_is_reported_by_every_job() -> None:
    def broken() -> None:
        raise RuntimeError("cannot open the database")

    lane = Lane(1, "t", broken)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="cannot open"):
                await lane.run(lambda: 1)

    asyncio.run(main())
    lane.shutdown()


def test_shutdown_finishes_queued_jobs_and_stops_the_threads() -> None:
    lane = Lane(2, "t")
    done: list[int] = []

    async def main() -> None:
        futures = [lane.run(lambda n=n: (time.sleep(0.01), done.append(n))) for n in range(6)]
        await asyncio.gather(*futures)

    asyncio.run(main())
    lane.shutdown()
    assert sorted(done) == list(range(6))
    assert not any(t.name.startswith("t_") and t.is_alive() for t in threading.enumerate())


def test_a_closed_loop_does_not_break_the_thread() -> None:
    lane = Lane(1, "t")
    gate = threading.Event()

    async def leave() -> None:
        lane.run(gate.wait, 5)  # its loop closes before the job ends

    asyncio.run(leave())
    gate.set()

    async def again() -> int:
        return await lane.run(lambda: 7)

    assert asyncio.run(again()) == 7
    lane.shutdown()
