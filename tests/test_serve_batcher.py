"""MicroBatcher: merging, token budget, bounded queue, cancellation, failure isolation, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from latentrm.errors import LatentrmError
from latentrm.serve.batcher import BatchPolicy, MicroBatcher, QueueFull, ShuttingDown
from latentrm.serve.metrics import ServeMetrics


class Recorder:
    """score_batch that returns payload * 10, sleeps `delay` and records every call."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.calls: list[list] = []
        self.lock = threading.Lock()

    def __call__(self, payloads: list) -> list[float]:
        with self.lock:
            self.calls.append(list(payloads))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in payloads:
            raise LatentrmError(f"bad payload {self.fail_on}")
        return [p * 10.0 for p in payloads]


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_requests_share_one_forward():
    recorder = Recorder(delay=0.05)

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=64, max_wait_ms=20))
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([i, i + 100], [5, 5]) for i in range(10)))
        await batcher.close()
        return results

    results = _run(main())
    assert results == [[i * 10.0, (i + 100) * 10.0] for i in range(10)]
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 20


def test_token_budget_and_item_cap_bound_each_forward():
    recorder = Recorder()
    tokens = [30, 10, 50, 40, 20, 60, 10, 10]

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_tokens=100, max_batch_items=3, max_wait_ms=10))
        batcher.start()
        out = await batcher.submit(list(range(len(tokens))), tokens)
        await batcher.close()
        return out

    assert _run(main()) == [i * 10.0 for i in range(len(tokens))]
    assert [p for call in recorder.calls for p in call] == list(range(len(tokens)))  # FIFO, split across calls
    for call in recorder.calls:
        assert len(call) <= 3
        assert len(call) == 1 or max(tokens[p] for p in call) * len(call) <= 100


def test_unbatched_policy_scores_one_item_per_call():
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy.unbatched())
        batcher.start()
        await asyncio.gather(*(batcher.submit([i], [5]) for i in range(6)))
        await batcher.close()

    _run(main())
    assert [len(c) for c in recorder.calls] == [1] * 6


def test_full_queue_refuses_then_recovers():
    recorder = Recorder(delay=0.1)
    metrics = ServeMetrics()

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=2, max_wait_ms=0, max_queue_items=3), metrics)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1, 2, 3], [1, 1, 1]))
        await asyncio.sleep(0)  # admitted; the worker takes 2 items, 1 stays queued
        with pytest.raises(QueueFull) as refused:
            await batcher.submit([4, 5, 6], [1, 1, 1])
        assert refused.value.retry_after >= 1
        assert await first == [10.0, 20.0, 30.0]
        again = await batcher.submit([7, 8, 9], [1, 1, 1])
        await batcher.close()
        return again

    assert _run(main()) == [70.0, 80.0, 90.0]
    assert metrics.rejected.labels("queue_full")._value.get() == 1
    assert metrics.queue_depth._value.get() == 0


def test_cancelled_request_is_dropped_without_hurting_others():
    recorder = Recorder(delay=0.15)
    metrics = ServeMetrics()

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=8, max_wait_ms=0), metrics)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit([1], [1]))  # occupies the scorer
        await asyncio.sleep(0.03)
        doomed = asyncio.ensure_future(batcher.submit([666, 667], [1, 1]))
        survivor = asyncio.ensure_future(batcher.submit([2], [1]))
        await asyncio.sleep(0.03)
        doomed.cancel()  # the client went away while its items were still queued
        results = await asyncio.gather(running, survivor)
        await batcher.close()
        return results

    assert _run(main()) == [[10.0], [20.0]]
    scored = [p for call in recorder.calls for p in call]
    assert 666 not in scored and 667 not in scored
    assert metrics.cancelled._value.get() == 2


def test_a_failing_request_fails_alone():
    recorder = Recorder(delay=0.05, fail_on=13)

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=16, max_wait_ms=30))
        batcher.start()
        outcomes = await asyncio.gather(batcher.submit([1], [1]), batcher.submit([13, 14], [1, 1]),
                                        batcher.submit([2], [1]), return_exceptions=True)
        await batcher.close()
        return outcomes

    ok1, bad, ok2 = _run(main())
    assert ok1 == [10.0] and ok2 == [20.0]
    assert isinstance(bad, LatentrmError)


def test_close_drains_admitted_work_and_refuses_new():
    recorder = Recorder(delay=0.05)

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=2, max_wait_ms=0))
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i], [1])) for i in range(5)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(ShuttingDown):
            await batcher.submit([99], [1])
        results = await asyncio.gather(*pending)
        await closing
        return results

    assert _run(main()) == [[i * 10.0] for i in range(5)]


def test_a_request_cancelled_during_its_forward_leaves_its_batch_mates_intact():
    recorder = Recorder(delay=0.2)

    async def main():
        batcher = MicroBatcher(recorder, BatchPolicy(max_batch_items=8, max_wait_ms=20))
        batcher.start()
        doomed = asyncio.ensure_future(batcher.submit([5], [1]))
        mate = asyncio.ensure_future(batcher.submit([6, 7], [1, 1]))
        while not recorder.calls:  # the shared forward is running
            await asyncio.sleep(0.005)
        doomed.cancel()  # the client went away mid-forward: its result is discarded
        shared = await mate
        after = await batcher.submit([8], [1])  # the worker is still healthy
        await batcher.close()
        return doomed, shared, after

    doomed, shared, after = _run(main())
    assert recorder.calls[0] == [5, 6, 7] and doomed.cancelled()
    assert shared == [60.0, 70.0] and after == [80.0]
