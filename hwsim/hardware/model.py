"""Hardware as frozen data: devices, memories, links and topologies.

Everything here is a plain value: no behaviour beyond derived quantities and routing, so that a
sweep can build variants with :func:`dataclasses.replace` and two equal descriptions compare equal.
Units are SI base units and are spelled in the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from hwsim.errors import HardwareError

TopologyKind = Literal["single", "ring", "switch", "two-level"]
DeviceKind = Literal["gpu", "cpu", "accelerator"]


@dataclass(frozen=True)
class Efficiency:
    """Fraction of peak an operation reaches, as a saturating curve of its size.

    ``fraction(x) = max_fraction * x / (x + half_x)``: tiny operations cannot fill the machine,
    large ones approach ``max_fraction``. Calibration fits the four numbers from microbenchmarks.
    """

    compute_max: float = 1.0
    compute_half_flops: float = 0.0
    memory_max: float = 1.0
    memory_half_bytes: float = 0.0

    def compute(self, flops: float) -> float:
        return self.compute_max * _saturate(flops, self.compute_half_flops)

    def memory(self, nbytes: float) -> float:
        return self.memory_max * _saturate(nbytes, self.memory_half_bytes)


def _saturate(x: float, half: float) -> float:
    if half <= 0.0:
        return 1.0
    if x <= 0.0:
        return 0.0
    return x / (x + half)


@dataclass(frozen=True)
class Memory:
    """Off-chip memory: capacity, aggregate bandwidth and how it is split into channels."""

    capacity_bytes: float
    bandwidth_bytes_per_s: float
    channels: int = 1
    transaction_bytes: int = 64

    @property
    def channel_bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s / self.channels


@dataclass(frozen=True)
class Engine:
    """A special-purpose unit on a device (a top-k engine, a DMA engine, near-memory adders).

    ``params`` holds its numbers in base units, keyed by the names its system model reads.
    """

    name: str
    units: int = 1
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, key: str) -> float:
        try:
            return self.params[key]
        except KeyError:
            raise HardwareError(f"engine {self.name!r} has no parameter {key!r}; it has {sorted(self.params)}") from None


@dataclass(frozen=True)
class Device:
    """One processor: its compute, its memory and its fixed per-operation cost."""

    name: str
    kind: DeviceKind
    compute_units: int
    clock_hz: float
    peak_flops_per_s: Mapping[str, float]
    memory: Memory
    sram_bytes: float
    launch_overhead_s: float
    efficiency: Efficiency = Efficiency()
    engines: Mapping[str, Engine] = field(default_factory=dict)
    sram_bandwidth_bytes_per_s: float | None = None
    """Bandwidth of operations whose bytes fit in ``sram_bytes`` (warm on-chip data); None: always off-chip."""

    def peak(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; unknown dtypes are an error, never a silent default."""
        try:
            return self.peak_flops_per_s[dtype]
        except KeyError:
            raise HardwareError(
                f"device {self.name!r} has no peak rate for dtype {dtype!r}; it has {sorted(self.peak_flops_per_s)}"
            ) from None

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise HardwareError(f"device {self.name!r} has no engine {name!r}; it has {sorted(self.engines)}") from None


@dataclass(frozen=True)
class Link:
    """A one-directional channel: bytes per second and a fixed latency per message."""

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0

    def time_s(self, nbytes: float) -> float:
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s


LinkId = tuple[str, int, int]
"""A directed link: (kind, from, to). Kinds: 'ring', 'up'/'down' (switch ports), 'nic-out'/'nic-in'."""


@dataclass(frozen=True)
class Topology:
    """How devices connect.

    * ``single``: one device, no links.
    * ``ring``: device i has a link to i+1 and to i-1 (bidirectional ring); messages take the shorter way.
    * ``switch``: every device has one egress and one ingress port on a non-blocking switch.
    * ``two-level``: ``nodes`` nodes of ``devices // nodes`` devices; a switch inside each node, and
      each device has its own network port (``inter_link``) to the other nodes.
    """

    kind: TopologyKind = "single"
    devices: int = 1
    link: Link | None = None
    nodes: int = 1
    inter_link: Link | None = None

    @property
    def devices_per_node(self) -> int:
        return self.devices // self.nodes

    def node_of(self, device: int) -> int:
        return device // self.devices_per_node

    def route(self, src: int, dst: int) -> tuple[LinkId, ...]:
        """The directed links a message from ``src`` to ``dst`` crosses, in order."""
        for d in (src, dst):
            if not 0 <= d < self.devices:
                raise HardwareError(f"device index {d} out of range for a {self.devices}-device {self.kind} topology")
        if src == dst:
            return ()
        if self.kind == "ring":
            n = self.devices
            forward = (dst - src) % n
            step = 1 if forward <= n - forward else -1
            hops, here = [], src
            while here != dst:
                nxt = (here + step) % n
                hops.append(("ring", here, nxt))
                here = nxt
            return tuple(hops)
        if self.kind == "switch" or (self.kind == "two-level" and self.node_of(src) == self.node_of(dst)):
            return (("up", src, -1), ("down", -1, dst))
        if self.kind == "two-level":
            return (("nic-out", src, -1), ("nic-in", -1, dst))
        raise HardwareError(f"a {self.kind!r} topology has no links between devices")

    def link_for(self, link_id: LinkId) -> Link:
        """The bandwidth and latency of one directed link."""
        kind = link_id[0]
        chosen = self.inter_link if kind in ("nic-out", "nic-in") else self.link
        if chosen is None:
            raise HardwareError(f"topology {self.kind!r} defines no link for {kind!r}")
        return chosen

    def link_ids(self) -> tuple[LinkId, ...]:
        """Every directed link of the topology."""
        n = self.devices
        if self.kind == "ring":
            if n == 2:
                return (("ring", 0, 1), ("ring", 1, 0))
            return tuple(("ring", i, (i + s) % n) for i in range(n) for s in (1, -1))
        ports: list[LinkId] = []
        if self.kind in ("switch", "two-level"):
            ports += [("up", i, -1) for i in range(n)] + [("down", -1, i) for i in range(n)]
        if self.kind == "two-level":
            ports += [("nic-out", i, -1) for i in range(n)] + [("nic-in", -1, i) for i in range(n)]
        return tuple(ports)


@dataclass(frozen=True)
class Hardware:
    """A named system: one device type replicated over a topology."""

    name: str
    description: str
    device: Device
    topology: Topology = Topology()
    source: str = "<memory>"
