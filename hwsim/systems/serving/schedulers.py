"""Batching schedulers other than Flover's: static and dynamic batches, continuous batching with pages.

Each is a :class:`~hwsim.systems.serving.batch.BatchScheduler` that only decides, through hooks,
who joins the fused batch and when; the loop that costs and times the iterations is shared.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import WorkloadError
from hwsim.systems.serving.batch import (
    Active,
    BatchScheduler,
    BatchState,
    SlottedBatchScheduler,
)
from hwsim.systems.serving.run import ServingRun
from hwsim.workloads.serving import Request

__all__ = ["ContinuousPaged", "DynamicBatching", "StaticBatching"]


def _line(req: Request) -> str:
    return f" (trace line {req.line})" if req.line else ""


class StaticBatching(SlottedBatchScheduler):
    """A batch of up to ``S`` waiting requests runs until its last request finishes; finished rows
    stay in the batch (padding) and keep being computed over their frozen context."""

    name = "static"

    def __init__(self, max_batch: int | None = None):
        super().__init__()
        self.max_batch = max_batch

    def _capacity(self) -> int:
        return self.slot_count if self.max_batch is None else min(self.slot_count, self.max_batch)

    def ready(self, state: BatchState, now_s: float) -> bool:
        return True

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        if state.live or state.dead_rows or not self.ready(state, now_s):
            return []
        take = state.waiting[: self._capacity()]
        del state.waiting[: len(take)]
        return take

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        if state.live:
            state.dead_rows += len(finished)
            state.dead_ctx += sum(a.ctx(state.iteration) for a in finished)
        else:
            state.dead_rows = state.dead_ctx = 0
        return 0.0


class DynamicBatching(StaticBatching):
    """Static batches formed when ``max_batch`` requests wait or the oldest has waited ``window_s``."""

    name = "dynamic"

    def __init__(self, window_s: float, max_batch: int):
        super().__init__(max_batch)
        if not window_s >= 0 or max_batch < 1:
            raise WorkloadError(f"dynamic batching needs window_s >= 0 and max_batch >= 1, got {window_s}, {max_batch}")
        self.window_s = window_s

    def ready(self, state: BatchState, now_s: float) -> bool:
        oldest = self.waiting_request(state.waiting[0]).arrival_s
        return len(state.waiting) >= self._capacity() or now_s >= oldest + self.window_s - 1e-12

    def wake_s(self, state: BatchState, now_s: float) -> float | None:
        if not state.waiting:
            return None
        return self.waiting_request(state.waiting[0]).arrival_s + self.window_s


class ContinuousPaged(BatchScheduler):
    """Continuous batching with a paged KV cache (vLLM-style): FCFS admission at every iteration
    boundary while the pages of the prompt fit above a watermark; pages are taken as contexts grow;
    when none are left, the most recently admitted request is preempted and later recomputed."""

    name = "continuous-paged"
    WATERMARK = 0.01  # vLLM keeps 1% of the blocks free at admission (BlockSpaceManager watermark)

    def __init__(self, max_batch: int = 256):  # vLLM's default max_num_seqs
        super().__init__()
        self.max_batch = max_batch

    def setup(self, run: ServingRun) -> None:
        self.blocks = run.cost.kv_blocks()
        self.block_tokens = run.config.block_tokens
        self.used = 0
        self.order: list[Active] = []
        self._base = np.zeros(0, dtype=np.int64)   # ctx0 - at_iter of each request in ``order``
        self._floor = np.zeros(0, dtype=np.int64)  # ctx0 + 1: pages held from admission on
        self.run = run
        too_long = next((r for r in run.requests if self._blocks(r.prompt_tokens + r.gen_tokens) > self.blocks), None)
        if too_long is not None:  # it would be preempted by itself forever: refuse it before the run
            raise WorkloadError(f"request {too_long.rid}{_line(too_long)}: {too_long.prompt_tokens} + "
                                f"{too_long.gen_tokens} tokens need more KV blocks than the device's {self.blocks}")

    def _blocks(self, tokens: int) -> int:
        return -(-tokens // self.block_tokens)

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        take: list[Request | Active] = []
        reserve = max(1, int(self.WATERMARK * self.blocks))
        # the running requests have grown since the last look: count their pages as of now, so a
        # new request is never given pages they already use (issue 14's "memory over capacity")
        self._sync(self._held(self._base, self._floor, state.iteration)[1])
        for item in state.waiting:
            if len(state.live) + len(take) >= self.max_batch:
                break
            req = self.waiting_request(item)
            done = req.gen_tokens - item.left0 if isinstance(item, Active) else 0
            need = self._blocks(req.prompt_tokens + done + 1)
            if need > self.blocks:
                raise WorkloadError(f"request {req.rid}{_line(req)} needs {need} KV blocks; the device holds {self.blocks}")
            running = len(state.live) + len(take)
            if running and self.used + need + running > self.blocks - reserve:
                break  # keep a page for each running request's next token, and the watermark
            if self.used + need > self.blocks:
                break
            self.used += need
            run.reserve(need * run.cost.block_bytes)
            take.append(item)
        del state.waiting[: len(take)]
        return take

    def on_join(self, act: Active) -> None:
        self.order.append(act)
        self._base = np.append(self._base, act.ctx0 - act.at_iter)
        self._floor = np.append(self._floor, act.ctx0 + 1)

    def stop_on_arrival(self, state: BatchState) -> bool:
        return not state.waiting and len(state.live) < self.max_batch

    def _held(self, base: np.ndarray, floor: np.ndarray, now_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """(contexts, pages held): a request holds the pages of its context, and from admission those
        of its first new token (``ctx0 + 1``)."""
        ctx = base + now_iter
        return ctx, -(-np.maximum(ctx, floor) // self.block_tokens)

    def _sync(self, held: np.ndarray) -> None:
        """Take the pages the live contexts have grown into since the last look."""
        total = int(held.sum())
        if total > self.used:
            self.run.reserve((total - self.used) * self.run.cost.block_bytes)
            self.used = total

    def max_iterations(self, run: ServingRun, state: BatchState) -> int | None:
        """Iterations until some request needs a page that is not there (exact, by bisection)."""
        ctx, held = self._held(self._base, self._floor, state.iteration)
        self._sync(held)
        free = self.blocks - self.used

        def extra(k: int) -> int:  # pages needed to run k iterations
            return int(np.maximum(-(-(ctx + k) // self.block_tokens) - held, 0).sum())

        if extra(state.horizon) <= free:
            return None
        if extra(1) > free:
            return 0
        lo, hi = 1, state.horizon
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if extra(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _drop(self, run: ServingRun, state: BatchState, gone: list[Active]) -> None:
        """Sync every page (the gone ones included, as of now), then free the pages of ``gone``."""
        _, held = self._held(self._base, self._floor, state.iteration)
        self._sync(held)
        keep = np.fromiter((not a.gone for a in self.order), dtype=bool, count=len(self.order))
        freed = int(held[~keep].sum())
        self.used -= freed
        run.release(freed * run.cost.block_bytes)
        self.order = [a for a in self.order if not a.gone]
        self._base, self._floor = self._base[keep], self._floor[keep]

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        self._drop(run, state, finished)
        return 0.0

    def preempt(self, run: ServingRun, state: BatchState) -> None:
        victim = self.order[-1]
        victim.gone = True
        del state.live[victim.req.rid]
        state.live_ctx -= victim.ctx(state.iteration)
        self._drop(run, state, [victim])
        left = victim.left0 - (state.iteration - victim.at_iter)
        state.waiting.insert(0, Active(victim.req, 0, left, 0, victim.start_s, victim.preemptions + 1))
