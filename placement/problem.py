"""What a placement solver is asked and what it answers, and the one validator every answer passes.

Units: a *load* is a count of token-slots (one token choosing one expert); a *cost* is in units of
"processing one token-slot on one GPU", so that the tail load and the traffic add up in one objective.
The topology cost is two-level: moving a token between two GPUs of a node costs ``intra_node_cost``,
between nodes ``inter_node_cost`` (a switch node is the one-node case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.errors import PlacementError


def _array(name: str, value: object, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PlacementError(f"{name} must be a {ndim}-d array of numbers") from None
    if arr.ndim != ndim:
        raise PlacementError(f"{name} must be {ndim}-d, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise PlacementError(f"{name} must be finite, got a NaN or infinite entry")
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise PlacementError(f"{name} must be >= 0, got {name}{list(idx)} = {arr[idx]!r}")
    return arr


@dataclass(frozen=True, eq=False)
class PlacementProblem:
    """Experts of ``layers`` MoE layers to place on ``gpus`` GPUs (``gpus_per_node`` per node).

    ``loads[l, e]``: token-slots routed to expert e of layer l.
    ``routing[l, a, b]``: token-slots that chose a at layer l and b at layer l+1 (``layers - 1`` matrices).
    ``capacity``: expert copies (replicas included) one GPU may hold per layer.
    """

    loads: np.ndarray
    routing: np.ndarray
    gpus: int
    capacity: int
    gpus_per_node: int | None = None
    intra_node_cost: float = 1.0
    inter_node_cost: float = 1.0
    name: str = "problem"

    def __post_init__(self) -> None:
        loads = _array("loads", self.loads, 2)
        routing = _array("routing", self.routing, 3)
        object.__setattr__(self, "loads", loads)
        object.__setattr__(self, "routing", routing)
        layers, experts = loads.shape
        if layers < 1 or experts < 1:
            raise PlacementError(f"loads must have at least one layer and one expert, got shape {loads.shape}")
        if routing.shape != (max(layers - 1, 0), experts, experts):
            raise PlacementError(
                f"routing must have shape ({layers - 1}, {experts}, {experts}) for {layers} layers of {experts} experts, "
                f"got {routing.shape}")
        for name in ("gpus", "capacity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise PlacementError(f"{name} must be a positive integer, got {v!r}")
        per_node = self.gpus if self.gpus_per_node is None else self.gpus_per_node
        if isinstance(per_node, bool) or not isinstance(per_node, (int, np.integer)) or per_node < 1 or self.gpus % per_node:
            raise PlacementError(f"gpus_per_node must be a positive divisor of gpus={self.gpus}, got {per_node!r}")
        object.__setattr__(self, "gpus_per_node", int(per_node))
        for name in ("intra_node_cost", "inter_node_cost"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating)) or not np.isfinite(v) or v < 0:
                raise PlacementError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.capacity * self.gpus < experts:
            raise PlacementError(
                f"infeasible: {experts} experts per layer do not fit on {self.gpus} GPUs x capacity {self.capacity} "
                f"({self.capacity * self.gpus} slots); raise capacity to at least {-(-experts // self.gpus)}")

    @property
    def layers(self) -> int:
        return int(self.loads.shape[0])

    @property
    def experts(self) -> int:
        return int(self.loads.shape[1])

    @property
    def nodes(self) -> int:
        return self.gpus // int(self.gpus_per_node)  # type: ignore[arg-type]

    def node_of(self, gpu: int) -> int:
        return gpu // int(self.gpus_per_node)  # type: ignore[arg-type]

    def cost_matrix(self) -> np.ndarray:
        """``D[g, h]``: cost of moving one token-slot from GPU g to GPU h (0 on the diagonal)."""
        node = np.arange(self.gpus) // int(self.gpus_per_node)  # type: ignore[arg-type]
        same_node = node[:, None] == node[None, :]
        d = np.where(same_node, float(self.intra_node_cost), float(self.inter_node_cost))
        np.fill_diagonal(d, 0.0)
        return d


@dataclass(frozen=True, eq=False)
class Placement:
    """Where each expert's copies live and how its tokens are split among them.

    ``copies[l, e, g]``: GPU g holds a copy of expert e of layer l.
    ``split[l, e, g]``: fraction of expert e's tokens served by GPU g (sums to 1 over g).
    """

    copies: np.ndarray
    split: np.ndarray
    solver: str = ""
    info: dict = field(default_factory=dict)

    @classmethod
    def from_assignment(cls, gpu_of: object, gpus: int, solver: str = "", info: dict | None = None) -> Placement:
        """One copy per expert: ``gpu_of[l, e]`` is its GPU."""
        arr = np.asarray(gpu_of)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise PlacementError(f"an assignment must be a 2-d integer array [layer, expert], got {arr.dtype} shape {arr.shape}")
        if np.any((arr < 0) | (arr >= gpus)):
            l, e = (int(i) for i in np.argwhere((arr < 0) | (arr >= gpus))[0])
            raise PlacementError(f"layer {l}: expert {e} assigned to GPU {int(arr[l, e])}, outside 0..{gpus - 1}")
        layers, experts = arr.shape
        split = np.zeros((layers, experts, gpus))
        split[np.arange(layers)[:, None], np.arange(experts)[None, :], arr] = 1.0
        return cls(copies=split > 0, split=split, solver=solver, info=dict(info or {}))

    def primary(self) -> np.ndarray:
        """``[l, e]`` -> the GPU serving the largest share of the expert."""
        return np.argmax(self.split, axis=2)

    def replicas(self) -> int:
        """Copies beyond one per expert, over all layers."""
        return int(self.copies.sum() - self.copies.shape[0] * self.copies.shape[1])


_SPLIT_TOL = 1e-6


def validate(problem: PlacementProblem, placement: Placement) -> None:
    """Raise :class:`PlacementError` naming the first defect; the same check for every solver."""
    who = f"placement from solver {placement.solver!r}" if placement.solver else "placement"
    shape = (problem.layers, problem.experts, problem.gpus)
    copies, split = np.asarray(placement.copies), np.asarray(placement.split)
    for name, arr in (("copies", copies), ("split", split)):
        if arr.shape != shape:
            raise PlacementError(f"{who}: {name} must have shape (layers, experts, gpus) = {shape}, got {arr.shape}")
    if copies.dtype != bool:
        raise PlacementError(f"{who}: copies must be boolean, got {copies.dtype}")
    if not np.all(np.isfinite(split)):
        raise PlacementError(f"{who}: split has a NaN or infinite entry")
    count = copies.sum(axis=2)
    if np.any(count == 0):
        l, e = (int(i) for i in np.argwhere(count == 0)[0])
        raise PlacementError(f"{who}: layer {l}: expert {e} is not placed on any GPU")
    per_gpu = copies.sum(axis=1)
    if np.any(per_gpu > problem.capacity):
        l, g = (int(i) for i in np.argwhere(per_gpu > problem.capacity)[0])
        raise PlacementError(
            f"{who}: layer {l}: GPU {g} holds {int(per_gpu[l, g])} experts, over its capacity of {problem.capacity}")
    if np.any(split < -_SPLIT_TOL) or np.any(split > 1 + _SPLIT_TOL):
        l, e, g = (int(i) for i in np.argwhere((split < -_SPLIT_TOL) | (split > 1 + _SPLIT_TOL))[0])
        raise PlacementError(f"{who}: layer {l}: expert {e}'s token share on GPU {g} is {split[l, e, g]!r}, outside [0, 1]")
    orphan = (split > _SPLIT_TOL) & ~copies
    if np.any(orphan):
        l, e, g = (int(i) for i in np.argwhere(orphan)[0])
        raise PlacementError(
            f"{who}: layer {l}: expert {e} sends {split[l, e, g]:.3g} of its tokens to GPU {g}, which holds no copy of it")
    totals = split.sum(axis=2)
    bad = np.abs(totals - 1.0) > 1e-6
    if np.any(bad):
        l, e = (int(i) for i in np.argwhere(bad)[0])
        raise PlacementError(f"{who}: layer {l}: expert {e}'s token shares sum to {totals[l, e]:.6g}, not 1")
    idle = copies & (split <= _SPLIT_TOL)
    if np.any(idle):
        l, e, g = (int(i) for i in np.argwhere(idle)[0])
        raise PlacementError(f"{who}: layer {l}: replica of expert {e} on GPU {g} gets no tokens (an unused copy)")


@dataclass(frozen=True)
class Objective:
    """The MoETuner objective of a placement, split into its two terms."""

    tail_load: float      # sum over layers of the most loaded GPU's token-slots
    traffic_cost: float   # sum over consecutive layers of routed token-slots x topology cost
    cross_gpu_tokens: float
    cross_node_tokens: float

    @property
    def total(self) -> float:
        return self.tail_load + self.traffic_cost


def gpu_loads(problem: PlacementProblem, placement: Placement) -> np.ndarray:
    """``[l, g]`` token-slots each GPU processes."""
    return np.einsum("le,leg->lg", problem.loads, placement.split)


def traffic_matrices(problem: PlacementProblem, placement: Placement) -> np.ndarray:
    """``[l, g, h]`` token-slots moving from GPU g (layer l's expert) to GPU h (layer l+1's expert)."""
    if problem.layers < 2:
        return np.zeros((0, problem.gpus, problem.gpus))
    return split_traffic(placement.split, problem.routing)


def split_traffic(split: np.ndarray, routing: np.ndarray) -> np.ndarray:
    """``S[l].T @ R[l] @ S[l+1]`` per layer pair, as two batched matrix products (a 3-operand einsum
    without a contraction order costs ~250x more at 256 experts)."""
    return np.matmul(np.matmul(np.swapaxes(split[:-1], 1, 2), routing), split[1:])


def objective(problem: PlacementProblem, placement: Placement) -> Objective:
    """Tail load plus traffic cost; a replicated expert's tokens follow its split independently per layer."""
    loads = gpu_loads(problem, placement)
    flows = traffic_matrices(problem, placement)
    d = problem.cost_matrix()
    node = np.arange(problem.gpus) // int(problem.gpus_per_node)  # type: ignore[arg-type]
    cross_node = node[:, None] != node[None, :]
    off = ~np.eye(problem.gpus, dtype=bool)
    return Objective(
        tail_load=float(loads.max(axis=1).sum()),
        traffic_cost=float((flows * d).sum()),
        cross_gpu_tokens=float(flows[:, off].sum()),
        cross_node_tokens=float(flows[:, cross_node].sum()),
    )
