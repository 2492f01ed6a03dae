"""Dynamic micro-batching: requests that arrive close together are scored in one forward pass.

How it works
- `submit(items, tokens)` queues one request's items (each with its token count) and
  waits for their scores. Admission is bounded: past `max_queue_items` waiting items
  it raises `QueueFull` at once (the server answers 503 + Retry-After), so memory
  never grows without limit.
- One worker task forms batches in arrival order. It waits up to `max_wait_ms` after
  the oldest waiting item for company, then takes items while the *padded* cost
  (items x longest item, which is what a padded forward computes) stays within
  `max_batch_tokens` and the count within `max_batch_items`. A request larger than
  one batch is spread over several. While a batch runs, new requests pile up, so
  under load batches fill without any waiting.
- The batch goes to `score_batch(payloads) -> scores`, run on one dedicated thread:
  exactly one reward-model call per batch, and the event loop stays free to accept,
  validate and answer requests.
- Isolation. A client that goes away cancels its wait: its queued items are
  dropped, and results of items already in flight are discarded; other requests in
  the batch are unaffected. If a batched call raises, each request in it is retried
  on its own, so one bad request fails alone.
- `close()` stops admission and drains: every admitted request is answered.

Batching off (`max_batch_items=1`, `max_wait_ms=0`) scores every item in its own call;
`bench/serve_load.py` compares the two.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from latentrm.serve.metrics import ServeMetrics

ScoreBatch = Callable[[list[Any]], Sequence[Any]]  # one result per payload (a float, or a (mean, std) pair)


class QueueFull(Exception):
    """The bounded queue cannot take this request now; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(QueueFull):
    """The server is draining and takes no new work."""


@dataclass(eq=False)  # identity semantics: jobs are dict keys
class _Job:
    payloads: list[Any]
    tokens: list[int]
    future: asyncio.Future
    enqueued_at: float
    results: list[Any] = field(default_factory=list)
    remaining: int = 0
    queued: int = 0  # items of this job still waiting in the queue
    dead: bool = False  # cancelled or failed: queued items are skipped


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_tokens: int = 16384
    max_batch_items: int = 64
    max_wait_ms: float = 5.0
    max_queue_items: int = 4096

    @classmethod
    def unbatched(cls, max_queue_items: int = 4096) -> BatchPolicy:
        return cls(max_batch_tokens=1 << 62, max_batch_items=1, max_wait_ms=0.0, max_queue_items=max_queue_items)


class MicroBatcher:
    def __init__(self, score_batch: ScoreBatch, policy: BatchPolicy | None = None,
                 metrics: ServeMetrics | None = None) -> None:
        self.score_batch = score_batch
        self.policy = policy or BatchPolicy()
        self.metrics = metrics
        self._queue: deque[tuple[_Job, int]] = deque()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentrm-score")
        self._closing = False
        self._recent_forward = 0.05  # seconds; an estimate for Retry-After

    # ------------------------------------------------------------------ public

    @property
    def queued_items(self) -> int:
        return self._queued_items

    def start(self) -> None:
        """Start the worker; call from inside the running event loop."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="latentrm-batcher")

    async def submit(self, payloads: list[Any], tokens: list[int]) -> list[Any]:
        """Queue one request's items and wait for their results (in order)."""
        if self._worker is None or self._wakeup is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if len(payloads) != len(tokens):
            raise ValueError("payloads and tokens differ in length")
        if not payloads:
            return []
        if self._closing:
            raise ShuttingDown("the server is shutting down; retry against another replica", retry_after=5)
        limit = self.policy.max_queue_items
        if self._queued_items + len(payloads) > limit:
            if self.metrics:
                self.metrics.rejected.labels("queue_full").inc()
            batches_ahead = self._queued_items / max(1, self.policy.max_batch_items)
            wait = max(1, round(batches_ahead * self._recent_forward))
            raise QueueFull(f"the scoring queue is full ({self._queued_items} items waiting, limit {limit}); "
                            f"retry later", retry_after=int(wait))
        job = _Job(list(payloads), list(tokens), asyncio.get_running_loop().create_future(), time.monotonic(),
                   results=[None] * len(payloads), remaining=len(payloads), queued=len(payloads))
        self._queue.extend((job, index) for index in range(len(payloads)))
        self._set_depth(self._queued_items + len(payloads))
        self._wakeup.set()
        try:
            return await job.future  # cancelling this wait (client gone) cancels the future too
        except asyncio.CancelledError:
            self._drop(job)
            raise

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish everything admitted, stop the worker thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except TimeoutError:
                self._worker.cancel()
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ internals

    def _set_depth(self, value: int) -> None:
        self._queued_items = value
        if self.metrics:
            self.metrics.queue_depth.set(value)

    def _drop(self, job: _Job) -> None:
        """A client went away: forget its queued items (results in flight are discarded)."""
        if job.dead:
            return
        job.dead = True
        if job.queued and self.metrics:
            self.metrics.cancelled.inc(job.queued)
        self._set_depth(self._queued_items - job.queued)
        job.queued = 0

    def _pop_live(self) -> tuple[_Job, int] | None:
        while self._queue:
            job, index = self._queue[0]
            if not job.dead:
                return job, index
            self._queue.popleft()
        return None

    def _take_batch(self) -> list[tuple[_Job, int]]:
        policy = self.policy
        batch: list[tuple[_Job, int]] = []
        width = 0
        while (head := self._pop_live()) is not None:
            job, index = head
            new_width = max(width, job.tokens[index])
            if batch and (len(batch) + 1 > policy.max_batch_items or new_width * (len(batch) + 1) > policy.max_batch_tokens):
                break
            self._queue.popleft()
            job.queued -= 1
            batch.append(head)
            width = new_width
        self._set_depth(self._queued_items - len(batch))
        return batch

    def _batch_is_full(self) -> bool:
        count, width = 0, 0
        for job, index in self._queue:
            if job.dead:
                continue
            width = max(width, job.tokens[index])
            count += 1
            if count >= self.policy.max_batch_items or width * count >= self.policy.max_batch_tokens:
                return True
        return False

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if self._pop_live() is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            oldest = self._queue[0][0].enqueued_at
            deadline = oldest + self.policy.max_wait_ms / 1000.0
            while not self._closing and not self._batch_is_full() and (left := deadline - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                try:
                    await self._score(batch)
                except Exception as exc:  # noqa: BLE001 - never let the worker die: fail this batch only
                    for job in dict.fromkeys(job for job, _ in batch):
                        self._fail(job, exc)

    async def _call(self, payloads: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        scores = await loop.run_in_executor(self._executor, self.score_batch, payloads)
        elapsed = time.perf_counter() - started
        self._recent_forward = 0.8 * self._recent_forward + 0.2 * elapsed
        scores = list(scores)
        if len(scores) != len(payloads):
            raise RuntimeError(f"the reward model returned {len(scores)} scores for {len(payloads)} items")
        if self.metrics:
            self.metrics.forward_seconds.observe(elapsed)
            self.metrics.items.inc(len(payloads))
        return scores

    async def _score(self, batch: list[tuple[_Job, int]]) -> None:
        now = time.monotonic()
        if self.metrics:
            width = max(job.tokens[index] for job, index in batch)
            self.metrics.batch_size.observe(len(batch))
            self.metrics.batch_tokens.observe(width * len(batch))
            for job, _ in batch:
                self.metrics.queue_wait.observe(now - job.enqueued_at)
        try:
            scores = await self._call([job.payloads[index] for job, index in batch])
        except Exception as exc:  # noqa: BLE001 - isolate the failing request, see the module docstring
            jobs = list(dict.fromkeys(job for job, _ in batch))
            if len(jobs) == 1:
                self._fail(jobs[0], exc)
                return
            for job in jobs:
                part = [(j, i) for j, i in batch if j is job]
                try:
                    part_scores = await self._call([job.payloads[i] for _, i in part])
                except Exception as job_exc:  # noqa: BLE001
                    self._fail(job, job_exc)
                    continue
                self._deliver(part, part_scores)
            return
        self._deliver(batch, scores)

    def _deliver(self, batch: list[tuple[_Job, int]], scores: list[Any]) -> None:
        for (job, index), score in zip(batch, scores, strict=True):
            if job.future.done():
                continue
            job.results[index] = score
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(list(job.results))

    def _fail(self, job: _Job, exc: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(exc)
        if not job.dead:
            job.dead = True
            self._set_depth(self._queued_items - job.queued)
            job.queued = 0
