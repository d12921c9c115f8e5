"""The T3 GPU's DRAM: efficiency under mixed streams, near-memory updates, and MCA's admission policy.

Built on the engine's public :class:`~hwsim.engine.SharedBandwidth` by swapping its allocator, so the
engine itself is unchanged. Every HBM flow of the T3 model carries a *stream kind* as the prefix of
its label (``"gemm.rd|..."``); the allocator reads the kinds of the active flows to decide two things:

* **Mixing efficiency** (:class:`DramTiming`). A lone sequential stream keeps its DRAM rows open and
  reaches the bandwidth the hardware file gives. Interleaved streams break row-buffer locality (a
  bank switching rows pays precharge + activate, partly hidden by other banks) and mixed reads and
  writes pay the bus turnaround. Served a row (page) at a time, the delivered fraction of peak is
  ``t_page / (t_page + P_switch * exposed * (tRP + tRCD) + P_rw * (tWTR + tRTW))`` with ``P_switch``
  the chance that consecutive pages come from different streams (``1 - sum p_i^2``) and ``P_rw``
  the chance that they differ in direction (``2 w (1 - w)``), ``p_i`` and ``w`` taken from the
  current allocation (one fixed-point step).
* **MCA** (:class:`MCAConfig`): the memory controller serves the GEMM's requests first and admits
  communication requests only while the queue occupancy stays below a threshold. By Little's law a
  stream's queue occupancy is its request rate times the service latency, so as a fraction of the
  queue it is ``rate / capacity``; a backlogged GEMM (a wave-synchronous load burst that wants more
  than the DRAM gives) fills the queue. Communication is then admitted only at the starvation bound;
  otherwise it gets the queue headroom up to the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.engine import Flow, max_min_fair
from hwsim.engine.bandwidth import Allocator
from hwsim.errors import SimulationError

GEMM_PREFIX = "gemm"
"""Flows whose kind starts with this are the GEMM's: MCA gives them priority."""

# stream kind -> (is a write on the DRAM bus)
STREAM_KINDS: dict[str, bool] = {
    "gemm.rd": False,   # A/B operand panels
    "gemm.wr": True,    # C tiles
    "coll.rd": False,   # DMA / collective kernel reads of a chunk to send or reduce
    "coll.wr": True,    # an incoming chunk (or a reduced chunk) written to HBM
    "nmc": True,        # a near-memory read-modify-write: a write on the bus, the read stays in the bank
}


class MemoryModelError(SimulationError):
    """A DRAM or MCA parameter the model cannot use."""


def stream_label(kind: str, text: str) -> str:
    """The label of an HBM flow of stream ``kind``."""
    if kind not in STREAM_KINDS:
        raise MemoryModelError(f"unknown HBM stream kind {kind!r}; known: {sorted(STREAM_KINDS)}")
    return f"{kind}|{text}"


def stream_kind(label: str) -> str:
    return label.split("|", 1)[0]


@dataclass(frozen=True)
class DramTiming:
    """What mixing streams costs a DRAM channel.

    Timings are HBM2 values as Ramulator's JESD235-based HBM model gives them (``src/HBM.h``, speed
    HBM_1Gbps, tCK 2 ns): tRCD = tRP = 7 tCK = 14 ns; tWTR_L = 4 tCK = 8 ns; read-to-write
    tRTW = (CL + BL + 2 - CWL) tCK = (7 + 1 + 2 - 4) x 2 ns = 12 ns.
    Page: 2 KB per channel (Ramulator HBM_4Gb: 128 columns x 16 B). Channel rate: 128 bit x 2 Gb/s =
    32 GB/s (HBM2, JESD235A), so a 1 TB/s part is 32 channels.
    ASSUMPTION: half of a row switch's precharge + activate is hidden by other banks' transfers
    (``exposed_fraction``); the bus turnaround is never hidden. Not fitted to anything.
    """

    t_rcd_s: float = 14e-9
    t_rp_s: float = 14e-9
    t_wtr_s: float = 8e-9
    t_rtw_s: float = 12e-9
    page_bytes: float = 2048.0
    channel_bytes_per_s: float = 32e9
    exposed_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("t_rcd_s", "t_rp_s", "t_wtr_s", "t_rtw_s"):
            if not getattr(self, name) >= 0:
                raise MemoryModelError(f"DramTiming.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.page_bytes > 0 or not self.channel_bytes_per_s > 0:
            raise MemoryModelError("DramTiming: page_bytes and channel_bytes_per_s must be > 0")
        if not 0.0 <= self.exposed_fraction <= 1.0:
            raise MemoryModelError(f"DramTiming.exposed_fraction must be in [0, 1], got {self.exposed_fraction!r}")

    @property
    def page_s(self) -> float:
        return self.page_bytes / self.channel_bytes_per_s

    def efficiency(self, rates_by_kind: dict[str, float]) -> float:
        """Delivered fraction of peak when streams of these kinds are served at these rates."""
        total = sum(rates_by_kind.values())
        if total <= 0 or len(rates_by_kind) < 2:
            return 1.0
        shares = [r / total for r in rates_by_kind.values()]
        p_switch = 1.0 - sum(p * p for p in shares)
        w = sum(r for k, r in rates_by_kind.items() if STREAM_KINDS.get(k, False)) / total
        p_rw = 2.0 * w * (1.0 - w)
        overhead = (p_switch * self.exposed_fraction * (self.t_rp_s + self.t_rcd_s)
                    + p_rw * (self.t_wtr_s + self.t_rtw_s))
        return self.page_s / (self.page_s + overhead)

    def nmc_occupancy(self) -> float:
        """Bank time of a near-memory update per byte, in bus-byte units: the write plus the exposed
        part of its in-bank column read (the same bank-parallelism assumption as row switches)."""
        return 1.0 + self.exposed_fraction


@dataclass(frozen=True)
class MCAConfig:
    """Memory-controller arbitration: GEMM requests first, communication admitted below a queue threshold.

    ``queue_threshold``: communication is admitted only while the GEMM's share of the request queue
    is below this; ``starvation_share``: what a held-back communication stream still gets (the
    arbiter's bounded wait). ASSUMPTION: the T3 abstract gives no numbers; 0.9 and 0.05 are ours.
    """

    queue_threshold: float = 0.9
    starvation_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.queue_threshold <= 1.0:
            raise MemoryModelError(f"MCA queue_threshold must be in (0, 1], got {self.queue_threshold!r}")
        if not 0.0 < self.starvation_share < 1.0:
            raise MemoryModelError(f"MCA starvation_share must be in (0, 1), got {self.starvation_share!r}")

    def gemm_promise(self, capacity_bytes_per_s: float, gemm_demand_bytes_per_s: float) -> float:
        """The least rate the policy guarantees the GEMM: its whole demand, or all but the starvation share."""
        return min(gemm_demand_bytes_per_s, (1.0 - self.starvation_share) * capacity_bytes_per_s)


def _demand(flows: Sequence[Flow]) -> float:
    total = 0.0
    for f in flows:
        if f.cap_bytes_per_s is None:
            return float("inf")
        total += f.cap_bytes_per_s
    return total


def mca_allocate(config: MCAConfig, capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
    """Set each flow's rate under MCA's queue-occupancy admission (see the module docstring)."""
    gemm = [f for f in flows if f.label.startswith(GEMM_PREFIX)]
    other = [f for f in flows if not f.label.startswith(GEMM_PREFIX)]
    if not gemm or not other:
        max_min_fair(capacity_bytes_per_s, flows)
        return
    floor = config.starvation_share * capacity_bytes_per_s
    occupancy = min(1.0, _demand(gemm) / capacity_bytes_per_s)  # Little's law: queue share = rate share
    if occupancy >= config.queue_threshold:
        admitted = floor
    else:
        admitted = max(floor, config.queue_threshold * capacity_bytes_per_s - _demand(gemm))
    max_min_fair(admitted, other)
    used = sum(f.rate_bytes_per_s for f in other)
    max_min_fair(capacity_bytes_per_s - used, gemm)


def dram_allocator(timing: DramTiming | None, mca: MCAConfig | None) -> Allocator:
    """The allocator of one HBM: fair or MCA sharing, of a capacity derated by the stream mix."""

    def share(capacity: float, flows: Sequence[Flow]) -> None:
        if mca is not None:
            mca_allocate(mca, capacity, flows)
        else:
            max_min_fair(capacity, flows)

    if timing is None:
        return share

    def allocate(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
        share(capacity_bytes_per_s, flows)
        rates: dict[str, float] = {}
        for f in flows:
            kind = stream_kind(f.label)
            rates[kind] = rates.get(kind, 0.0) + f.rate_bytes_per_s
        efficiency = timing.efficiency(rates)
        if efficiency < 1.0:
            share(capacity_bytes_per_s * efficiency, flows)

    return allocate


__all__ = [
    "GEMM_PREFIX",
    "STREAM_KINDS",
    "DramTiming",
    "MCAConfig",
    "MemoryModelError",
    "dram_allocator",
    "mca_allocate",
    "stream_kind",
    "stream_label",
]
