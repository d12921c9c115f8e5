"""Closed-form costs of collectives on a :class:`~hwsim.hardware.model.Topology`.

These are the analytical reference the event engine is checked against: no contention between
collectives, no overlap with compute. Ring collectives visit devices in index order 0 -> 1 -> ... ->
N-1 -> 0, so on a two-level topology one hop per node boundary crosses the network.

Path model. A message crosses the links :meth:`Topology.route` returns, cut-through: the slowest
link on the route (largest ``latency + bytes / bandwidth``) sets its time, latency counted once.
That matches the presets, whose switch ``link`` describes the whole NVLink + NVSwitch path.

Times cover links only; HBM traffic is reported (``hbm_bytes_per_device``) so that a system model
can charge it against a shared memory port, but it is not added to ``time_s`` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from hwsim.costs.ops import _amount, _count
from hwsim.errors import CostError
from hwsim.hardware.model import Link, LinkId, Topology

HbmStepModel = Callable[[int, float], float]
"""``(step, chunk_bytes) -> HBM bytes one device moves in that ring step``; swap it to model
near-memory reduction or other data paths. Steps are numbered from 0."""


@dataclass(frozen=True)
class CollectiveCost:
    """What a collective costs each device; ``steps`` counts logical ring steps, not pipeline pieces."""

    op: str
    size_bytes: float
    devices: int
    steps: int
    time_s: float
    link_bytes_per_device: float
    hbm_bytes_per_device: float


@dataclass(frozen=True)
class AllToAllCost(CollectiveCost):
    """An all-to-all, with the bytes each directed link carries (only links that carry any)."""

    link_loads: Mapping[LinkId, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def hot_link(self) -> LinkId | None:
        """The link whose load sets the time, or ``None`` when nothing crosses a link."""
        if not self.link_loads:
            return None
        return max(self.link_loads, key=lambda link: self.link_loads[link])


def reduce_step_hbm_bytes(step: int, chunk_bytes: float) -> float:
    """HBM bytes per device in one reduce-scatter step, for a GPU that reduces in its cores.

    Read the chunk to send (1), write the received chunk (1), read the local and the received
    chunk for the add (2), write the reduced chunk (1): 5 chunks. Same for every step.
    """
    return 5.0 * chunk_bytes


def gather_step_hbm_bytes(step: int, chunk_bytes: float) -> float:
    """HBM bytes per device in one all-gather step: read the chunk to send, write the received one."""
    return 2.0 * chunk_bytes


def _route_link(topology: Topology, src: int, dst: int, nbytes: float) -> Link:
    """The link on the route ``src -> dst`` that takes longest for a message of ``nbytes``."""
    links = [topology.link_for(link_id) for link_id in topology.route(src, dst)]
    return max(links, key=lambda link: link.time_s(nbytes))


def _ring_time_s(topology: Topology, chunk_bytes: float, steps: int, chunks: int) -> float:
    """Time of ``steps`` ring steps of ``chunk_bytes``, the message split in ``chunks`` pipelined pieces.

    Every device sends to its successor at once and a step cannot start before the previous one
    delivered, so the slowest neighbour pair gates the ring: ``max over pairs of
    (steps + chunks - 1) * latency + steps * chunk / bandwidth``. Splitting does not change the bytes
    a link carries (bandwidth term fixed); each extra piece adds one message latency to the
    pipeline (fill ``steps`` latencies, then one per further piece).
    """
    n = topology.devices
    worst = 0.0
    for i in range(n):
        link = _route_link(topology, i, (i + 1) % n, chunk_bytes)
        pair_s = (steps + chunks - 1) * link.latency_s + steps * chunk_bytes / link.bandwidth_bytes_per_s
        worst = max(worst, pair_s)
    return worst


def _zero(op: str, size_bytes: float) -> CollectiveCost:
    return CollectiveCost(op, size_bytes, 1, 0, 0.0, 0.0, 0.0)


def _ring_pass(op: str, topology: Topology, size_bytes: float, chunks: int, hbm_step: HbmStepModel) -> CollectiveCost:
    """N-1 ring steps of ``size/N``: the shape shared by reduce-scatter and all-gather."""
    size_bytes = _amount("size_bytes", size_bytes)
    chunks = _count("chunks", chunks)
    n = topology.devices
    if n == 1:
        return _zero(op, size_bytes)
    chunk = size_bytes / n
    steps = n - 1
    return CollectiveCost(
        op=op,
        size_bytes=size_bytes,
        devices=n,
        steps=steps,
        time_s=_ring_time_s(topology, chunk, steps, chunks),
        link_bytes_per_device=steps * chunk,
        hbm_bytes_per_device=math.fsum(hbm_step(s, chunk) for s in range(steps)),
    )


def ring_reduce_scatter(
    topology: Topology,
    size_bytes: float,
    chunks: int = 1,
    hbm_step: HbmStepModel = reduce_step_hbm_bytes,
) -> CollectiveCost:
    """Reduce ``size_bytes`` held by every device so each ends with its reduced 1/N share.

    N-1 steps; in each, every device sends ``size/N`` to its ring successor and adds what it got.
    Link bytes per device: (N-1)/N * size. HBM bytes per device: sum of ``hbm_step`` over the steps
    (5 chunks per step by default, see :func:`reduce_step_hbm_bytes`).
    """
    return _ring_pass("reduce_scatter", topology, size_bytes, chunks, hbm_step)


def ring_all_gather(
    topology: Topology,
    size_bytes: float,
    chunks: int = 1,
    hbm_step: HbmStepModel = gather_step_hbm_bytes,
) -> CollectiveCost:
    """Gather ``size_bytes`` in total (``size/N`` from each device) onto every device.

    N-1 steps of ``size/N``; link bytes per device (N-1)/N * size; HBM bytes from ``hbm_step``
    (read what is sent, write what is received by default).
    """
    return _ring_pass("all_gather", topology, size_bytes, chunks, hbm_step)


def ring_all_reduce(
    topology: Topology,
    size_bytes: float,
    chunks: int = 1,
    reduce_hbm_step: HbmStepModel = reduce_step_hbm_bytes,
    gather_hbm_step: HbmStepModel = gather_step_hbm_bytes,
) -> CollectiveCost:
    """Ring all-reduce: a reduce-scatter followed by an all-gather, 2(N-1) steps of ``size/N``.

    With ``chunks`` > 1 the message is cut into that many pieces pipelined around the ring: the
    bandwidth term stays 2(N-1)/N * S / B and the latency term becomes (2(N-1) + chunks - 1) * latency.
    Link bytes per device: 2(N-1)/N * S. HBM bytes: the reduce-scatter's plus the all-gather's
    (gather steps are numbered after the reduce steps, from N-1).
    """
    size_bytes = _amount("size_bytes", size_bytes)
    chunks = _count("chunks", chunks)
    n = topology.devices
    if n == 1:
        return _zero("all_reduce", size_bytes)
    chunk = size_bytes / n
    half = n - 1
    hbm = math.fsum(reduce_hbm_step(s, chunk) for s in range(half))
    hbm += math.fsum(gather_hbm_step(s, chunk) for s in range(half, 2 * half))
    return CollectiveCost(
        op="all_reduce",
        size_bytes=size_bytes,
        devices=n,
        steps=2 * half,
        time_s=_ring_time_s(topology, chunk, 2 * half, chunks),
        link_bytes_per_device=2 * half * chunk,
        hbm_bytes_per_device=hbm,
    )


def _byte_matrix(byte_matrix: object, n: int) -> np.ndarray:
    try:
        matrix = np.asarray(byte_matrix, dtype=float)
    except (TypeError, ValueError):
        raise CostError(f"byte_matrix must be an {n} x {n} array of numbers, got {byte_matrix!r}") from None
    if matrix.shape != (n, n):
        raise CostError(f"byte_matrix must be {n} x {n} for a {n}-device topology, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise CostError("byte_matrix must be finite, got a NaN or infinite entry")
    if np.any(matrix < 0):
        i, j = np.argwhere(matrix < 0)[0]
        raise CostError(f"byte_matrix must be >= 0, got byte_matrix[{i}][{j}] = {matrix[i, j]!r}")
    return matrix


def all_to_all(topology: Topology, byte_matrix: object) -> AllToAllCost:
    """Every device ``i`` sends ``byte_matrix[i][j]`` bytes to every ``j`` at once.

    Each message follows :meth:`Topology.route`; a directed link carries the sum of the messages
    routed over it and links work in parallel, so ``time = max over links (latency + load / bandwidth)``
    (one latency per link: messages on a link are pipelined). The diagonal stays local and is ignored.
    ``link_bytes_per_device`` is the most any device sends; ``hbm_bytes_per_device`` the most any
    device reads (what it sends) plus writes (what it receives).
    """
    n = topology.devices
    matrix = _byte_matrix(byte_matrix, n)
    off = matrix.copy()
    np.fill_diagonal(off, 0.0)
    parts: dict[LinkId, list[float]] = {}
    for i, j in zip(*np.nonzero(off)):
        for link_id in topology.route(int(i), int(j)):
            parts.setdefault(link_id, []).append(float(off[i, j]))
    # fsum: a load is the correctly rounded sum, whatever order the messages are listed in
    loads = {link_id: math.fsum(values) for link_id, values in parts.items()}
    time_s = max(
        (topology.link_for(link_id).time_s(load) for link_id, load in loads.items()),
        default=0.0,
    )
    sent = [math.fsum(off[i, :]) for i in range(n)]
    received = [math.fsum(off[:, j]) for j in range(n)]
    return AllToAllCost(
        op="all_to_all",
        size_bytes=math.fsum(off.ravel()),
        devices=n,
        steps=1 if loads else 0,
        time_s=time_s,
        link_bytes_per_device=max(sent, default=0.0),
        hbm_bytes_per_device=max((s + r for s, r in zip(sent, received)), default=0.0),
        link_loads=MappingProxyType(loads),
    )
