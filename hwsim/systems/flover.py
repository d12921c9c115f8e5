"""Flover (Yao et al., HiPC 2023): temporal fusion of autoregressive requests, with buffer reordering.

Only Flover's own parts live here: :class:`FloverFusion` (a new request joins the running batch at
the next iteration boundary) and the minimum-move buffer reordering that evicts finished requests.
The serving simulator they run in (the run loop, the baselines, the iteration cost model) is
:mod:`hwsim.systems.serving`; its names are re-exported here so older imports keep working.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.systems.serving import (
    Active,
    BatchScheduler,
    BatchState,
    ConcurrentInstances,
    ContinuousPaged,
    DynamicBatching,
    RequestRecord,
    RunResult,
    Scheduler,
    ServingRun,
    SlottedBatchScheduler,
    StaticBatching,
    Step,
    simulate,
    simulate_replicas,
)

__all__ = [
    "Active", "BatchScheduler", "BatchState", "ConcurrentInstances", "ContinuousPaged", "DynamicBatching",
    "FloverFusion", "RequestRecord", "RunResult", "Scheduler", "ServingRun", "StaticBatching", "Step",
    "min_reorder_moves", "reorder_slots", "simulate", "simulate_replicas",
]


def min_reorder_moves(occupied: Sequence[bool]) -> int:
    """Fewest slot moves that make the occupied slots contiguous: slide a window of the occupied
    count over the array; every occupied slot outside the best window must move into one of its holes."""
    occ = np.asarray(occupied, dtype=np.int64)
    count = int(occ.sum())
    if count == 0:
        return 0
    sums = np.convolve(occ, np.ones(count, dtype=np.int64), mode="valid")
    return count - int(sums.max())


def reorder_slots(slots: list) -> tuple[int, list[tuple[int, int]]]:
    """Make the non-None entries of ``slots`` contiguous with the fewest moves, in place.

    Returns (window start, [(from, to), ...]). The window is the leftmost one holding the most
    occupied slots; holes inside it are filled, in order, by the occupied slots outside it.
    """
    occ = [s is not None for s in slots]
    count = sum(occ)
    if count == 0:
        return 0, []
    sums = np.convolve(np.asarray(occ, dtype=np.int64), np.ones(count, dtype=np.int64), mode="valid")
    start = int(np.argmax(sums))
    holes = [i for i in range(start, start + count) if slots[i] is None]
    outside = [i for i, o in enumerate(occ) if o and not start <= i < start + count]
    moves = list(zip(outside, holes))
    for src, dst in moves:
        slots[dst], slots[src] = slots[src], None
    return start, moves


_DEAD = object()


class FloverFusion(SlottedBatchScheduler):
    """Temporal fusion: a new request joins the running batch at the next iteration boundary.

    The fused kernel computes the contiguous span ``[lo, hi)`` of the slot array. Without
    reordering, a finished request in the middle stays computed (a dead row over its frozen KV)
    and its slot is reused only once it becomes an end of the span. With reordering, finished
    slots are evicted and the minimum set of live slots is moved to close the holes; each move
    copies that request's KV cache (its current context) over HBM.
    """

    def __init__(self, reorder: bool = True):
        super().__init__()
        self.reorder = reorder
        self.name = "flover" if reorder else "flover-no-reorder"

    def setup(self, run: ServingRun) -> None:
        super().setup(run)
        self.slots: list = [None] * self.slot_count
        self.lo = self.hi = 0
        self._dead_ctx: dict[int, int] = {}  # slot -> frozen context of the dead row there

    def _free_ends(self) -> int:
        return (self.slot_count - self.hi) + self.lo if self.hi > self.lo else self.slot_count

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        take = state.waiting[: self._free_ends()]
        del state.waiting[: len(take)]
        return take

    def on_join(self, act: Active) -> None:
        if self.hi == self.lo:
            self.lo = self.hi = 0
        if self.hi < self.slot_count:
            act.slot, self.hi = self.hi, self.hi + 1
        else:
            self.lo -= 1
            act.slot = self.lo
        self.slots[act.slot] = act

    def stop_on_arrival(self, state: BatchState) -> bool:
        return not state.waiting and self._free_ends() > 0

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        for act in finished:
            self.slots[act.slot] = _DEAD
            state.dead_rows += 1
            state.dead_ctx += act.ctx(state.iteration)
            self._dead_ctx[act.slot] = act.ctx(state.iteration)
        copied = 0.0
        if self.reorder:
            for i in range(self.lo, self.hi):
                if self.slots[i] is _DEAD:
                    self._drop_dead(state, i)
            span = self.slots[self.lo:self.hi]
            start, moves = reorder_slots(span)
            self.slots[self.lo:self.hi] = span
            for src, dst in moves:
                act = span[dst]
                act.slot = self.lo + dst
                copied += act.ctx(state.iteration) * run.cost.kv_bytes_per_token
            run.reorder_moves += len(moves)
            run.reorder_bytes += copied
            count = len(state.live)
            self.lo, self.hi = self.lo + start, self.lo + start + count
        else:
            while self.lo < self.hi and self.slots[self.lo] is _DEAD:
                self._drop_dead(state, self.lo)
                self.lo += 1
            while self.hi > self.lo and self.slots[self.hi - 1] is _DEAD:
                self._drop_dead(state, self.hi - 1)
                self.hi -= 1
        return copied

    def _drop_dead(self, state: BatchState, slot: int) -> None:
        self.slots[slot] = None
        state.dead_rows -= 1
        state.dead_ctx -= self._dead_ctx.pop(slot)
