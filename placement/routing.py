"""Routing traces: a seeded synthetic generator and a loader for the real statistics.

Generator: each layer's expert popularity is Zipf-skewed (``p_e ∝ rank^-zipf_s`` over a random
ranking); a token-slot's next-layer expert follows a Markov matrix whose rows mix the next layer's
popularity with a sparse random coupling of the two layers: ``concentration`` in [0, 1] is the weight of
the coupling (0: the next choice is independent of the current one; 1: each expert feeds only one or a
few experts of the next layer). The chain keeps every layer's popularity exactly. Token-slots are then
sampled through it (multinomial), so loads and routing counts carry sampling noise.

Real data: ``<model>_<domain>.npz`` from the allenai/OLMoE routing analysis (scripts/routing_output/,
Apache-2.0; converted to plain arrays in ../shared/data/routing, README there), loaded without pickle.
Only layers 0, 7 and 15 were recorded, and the cross-layer counts pair layers 0->7 and 7->15.

Fitting: ``zipf_s`` is chosen to match the real load coefficient of variation, ``concentration`` to
match the real cross-layer affinity over the same layer distance (the generator's chain is composed
over that many steps), affinity measured as normalised mutual information between the two choices.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.placement.problem import PlacementError


@dataclass(frozen=True, eq=False)
class RoutingModel:
    """Per-layer popularity ``[L, E]`` and next-layer transition matrices ``[L-1, E, E]`` (rows sum to 1)."""

    popularity: np.ndarray
    transitions: np.ndarray
    top_k: int = 1

    @property
    def layers(self) -> int:
        return int(self.popularity.shape[0])

    @property
    def experts(self) -> int:
        return int(self.popularity.shape[1])


@dataclass(frozen=True, eq=False)
class RoutingTrace:
    """Counts of token-slots: ``loads[l, e]`` and ``routing[l, a, b]`` (a at layer l, b at l+1)."""

    loads: np.ndarray
    routing: np.ndarray
    top_k: int = 1


def zipf_popularity(experts: int, zipf_s: float, rng: np.random.Generator) -> np.ndarray:
    weights = np.arange(1, experts + 1, dtype=float) ** -float(zipf_s)
    return rng.permutation(weights / weights.sum())


def synthetic_model(layers: int, experts: int, zipf_s: float, concentration: float, rng: np.random.Generator,
                    top_k: int = 1) -> RoutingModel:
    """A random model with the given skew and affinity; every draw from ``rng``."""
    if layers < 1 or experts < 1:
        raise PlacementError(f"need layers >= 1 and experts >= 1, got {layers}, {experts}")
    if zipf_s < 0 or not 0 <= concentration <= 1:
        raise PlacementError(f"need zipf_s >= 0 and 0 <= concentration <= 1, got {zipf_s}, {concentration}")
    popularity = np.stack([zipf_popularity(experts, zipf_s, rng) for _ in range(layers)])
    return RoutingModel(popularity, _transitions(popularity, concentration, rng), top_k)


def _coupling(p: np.ndarray, q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sparse joint distribution with marginals p and q: the north-west-corner coupling of the two
    under random orderings (each expert of one layer feeds one or a few experts of the next)."""
    order_p, order_q = rng.permutation(len(p)), rng.permutation(len(q))
    joint = np.zeros((len(p), len(q)))
    i = j = 0
    left_p, left_q = p[order_p[0]], q[order_q[0]]
    while i < len(p) and j < len(q):
        mass = min(left_p, left_q)
        joint[order_p[i], order_q[j]] += mass
        left_p -= mass
        left_q -= mass
        if left_p <= 1e-15:
            i += 1
            left_p = p[order_p[i]] if i < len(p) else 0.0
        if left_q <= 1e-15:
            j += 1
            left_q = q[order_q[j]] if j < len(q) else 0.0
    return joint


def _transitions(popularity: np.ndarray, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """Rows ``(1 - c) * p_next + c * coupling_row``: every row mixes the next layer's popularity with a
    sparse affinity, so the chain keeps each layer's popularity exactly, for any concentration c."""
    layers, experts = popularity.shape
    out = np.empty((max(layers - 1, 0), experts, experts))
    for l in range(layers - 1):
        joint = _coupling(popularity[l], popularity[l + 1], rng)
        affine = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)
        out[l] = (1 - concentration) * popularity[l + 1][None, :] + concentration * affine
    return out


def sample_trace(model: RoutingModel, token_slots: int, rng: np.random.Generator) -> RoutingTrace:
    """Push ``token_slots`` slots through the chain."""
    L, E = model.layers, model.experts
    loads = np.zeros((L, E))
    routing = np.zeros((max(L - 1, 0), E, E))
    counts = rng.multinomial(token_slots, model.popularity[0])
    loads[0] = counts
    for l in range(L - 1):
        for a in np.flatnonzero(counts):
            routing[l, a] = rng.multinomial(int(counts[a]), model.transitions[l, a])
        counts = routing[l].sum(axis=0).astype(np.int64)
        loads[l + 1] = counts
    return RoutingTrace(loads, routing, model.top_k)


# ---------------------------------------------------------------------------------------------
# real data

@dataclass(frozen=True, eq=False)
class RealRouting:
    """One ``<model>_<domain>.npz`` file."""

    name: str
    num_experts: int
    top_k: int
    num_layers: int
    layers: np.ndarray          # recorded layers
    expert_counts: np.ndarray   # [len(layers), E]
    cross_pairs: np.ndarray     # [P, 2] layer pairs
    cross_counts: np.ndarray    # [P, E, E]


ROUTING_DIR = Path(__file__).resolve().parent / "data" / "routing"
"""Copies of the real files, shipped with the package."""


def routing_file(model: str, domain: str) -> Path:
    """The shipped real file for ``model`` (mixtral-8x7b, olmoe-1b-7b) on ``domain`` (arxiv, github)."""
    path = ROUTING_DIR / f"{model}_{domain}.npz"
    if not path.exists():
        known = sorted(p.stem for p in ROUTING_DIR.glob("*.npz"))
        raise PlacementError(f"no routing statistics for {model!r} on {domain!r}; known: {', '.join(known)}")
    return path


_KEYS = ("num_experts", "top_k", "num_layers", "layers", "expert_counts", "cross_pairs", "cross_counts")


def load_routing(path: str | Path) -> RealRouting:
    """Load a real routing-statistics file (plain arrays; pickle refused)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:  # numpy calls any non-zip file "pickled data"; say what it is not
            if handle.read(2) != b"PK":
                raise PlacementError(f"{path}: not an .npz archive (a zip of numpy arrays)")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise PlacementError(f"{path}: missing arrays {missing}")
            arrays = {k: np.asarray(data[k]) for k in _KEYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:  # corrupt or truncated
        raise PlacementError(f"{path}: cannot read routing statistics ({type(exc).__name__}: {exc})") from None
    try:  # a file of the right names but wrong kinds (text, NaN, scalars for arrays) is refused, not a crash
        e, top_k, num_layers = (int(arrays[k]) for k in ("num_experts", "top_k", "num_layers"))
        real = {k: arrays[k].astype(float) for k in ("expert_counts", "cross_counts", "layers", "cross_pairs")}
        if not all(np.all(np.isfinite(v)) and v.min(initial=0) >= 0 for v in real.values()):
            raise PlacementError(f"{path}: counts and indices must be finite and non-negative")
        counts, cross = real["expert_counts"], real["cross_counts"]
        layers, pairs = arrays["layers"].astype(int), arrays["cross_pairs"].astype(int)
        shapes_agree = (counts.shape == (len(layers), e) and cross.ndim == 3 and cross.shape[1:] == (e, e)
                        and cross.shape[0] == len(pairs))
    except (TypeError, ValueError, OverflowError) as exc:
        raise PlacementError(f"{path}: malformed routing statistics ({exc})") from None
    if not shapes_agree:
        raise PlacementError(f"{path}: array shapes disagree with num_experts={e}")
    return RealRouting(path.stem, e, top_k, num_layers, layers, counts, pairs, cross)


def load_cv(counts: np.ndarray) -> float:
    """Mean over layers of the coefficient of variation of per-expert load."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    return float(np.mean(counts.std(axis=1) / counts.mean(axis=1)))


def affinity(joint: np.ndarray) -> float:
    """Normalised mutual information I(A;B)/H(B) of a joint count matrix (0: independent, 1: determined)."""
    p = np.asarray(joint, dtype=float)
    p = p / p.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pa[:, None] * pb[None, :])[nz])).sum())
    hb = float(-(pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return mi / hb if hb > 0 else 0.0


def _chain_joint(model: RoutingModel, first: int, last: int) -> np.ndarray:
    """Expected joint distribution of a slot's experts at layers ``first`` and ``last``."""
    t = np.eye(model.experts)
    for l in range(first, last):
        t = t @ model.transitions[l]
    return model.popularity[first][:, None] * t


@dataclass(frozen=True)
class FitReport:
    """How close the fitted generator gets to a real file."""

    name: str
    zipf_s: float
    concentration: float
    real_cv: float
    fitted_cv: float
    real_affinity: float
    fitted_affinity: float


def _bisect(f, lo: float, hi: float, steps: int = 30) -> float:
    """Root of a monotone ``f`` on [lo, hi] (clamped to an end when there is none)."""
    flo, fhi = f(lo), f(hi)
    if flo * fhi > 0:
        return lo if abs(flo) < abs(fhi) else hi
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if f(mid) * flo > 0:
            lo, flo = mid, f(mid)
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_model(real: RealRouting, structure_seed: int, layers: int | None = None) -> tuple[RoutingModel, FitReport]:
    """A full-depth model whose statistics match ``real``.

    Layers the file recorded keep their real popularity; the others get Zipf popularity with the
    fitted exponent. The random structure (rankings, Dirichlet draws) comes from ``structure_seed``
    only, so two domains of one model fitted with one seed share it and differ only where the data
    (recorded layers, skew, affinity) differ.
    """
    L = layers or real.num_layers
    E = real.num_experts
    real_cv = load_cv(real.expert_counts)
    real_aff = float(np.mean([affinity(c) for c in real.cross_counts]))

    def zipf_cv(s: float) -> float:
        w = np.arange(1, E + 1, dtype=float) ** -s
        return float(w.std() / w.mean())

    zipf_s = _bisect(lambda s: zipf_cv(s) - real_cv, 0.0, 4.0)

    def build(conc: float) -> RoutingModel:
        rng = np.random.default_rng(structure_seed)
        popularity = np.stack([zipf_popularity(E, zipf_s, rng) for _ in range(L)])
        for i, layer in enumerate(real.layers):
            if layer < L:
                popularity[layer] = real.expert_counts[i] / real.expert_counts[i].sum()
        return RoutingModel(popularity, _transitions(popularity, conc, rng), real.top_k)

    def model_aff(conc: float) -> float:
        m = build(conc)
        vals = [affinity(_chain_joint(m, int(a), int(b))) for a, b in real.cross_pairs if b < L]
        return float(np.mean(vals)) - real_aff

    conc = _bisect(model_aff, 0.0, 1.0, steps=30)
    model = build(conc)
    fitted_aff = model_aff(conc) + real_aff
    report = FitReport(real.name, zipf_s, conc, real_cv, load_cv(model.popularity), real_aff, fitted_aff)
    return model, report
