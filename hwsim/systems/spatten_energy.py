"""Per-operation energy of SpAtten and of its GPU/CPU baselines, each number with its source.

SpAtten is synthesized in a 40 nm process at 1 GHz (SpAtten, HPCA'21, Sec. V). No per-operation
table for that node is public in our sources, so the on-chip numbers come from the closest published
table, Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V), used unscaled: an
assumption that leans a little high for 40 nm. Widths the table does not list are interpolated and
marked as assumptions. Static (leakage) power is not modelled: SpAtten's energy is a lower bound.

The baselines are priced as board/package power times the modelled run time: the vendors' thermal
design power, an assumption (a memory-bound attention kernel may draw less; the paper measured).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BASELINE_POWER_W", "ENERGY", "EnergyTable", "SpAttenEnergy", "baseline_energy_j"]


@dataclass(frozen=True)
class EnergyTable:
    """Joules per event."""

    dram_per_bit_j: float
    sram_per_bit_j: float
    mult_12b_j: float
    add_24b_j: float
    compare_12b_j: float
    softmax_per_element_j: float


# Horowitz ISSCC 2014 (45 nm): 8-bit int mult 0.2 pJ, 32-bit int mult 3.1 pJ; 8-bit add 0.03 pJ,
# 32-bit add 0.1 pJ; fp32 mult 3.7 pJ, fp32 add 0.9 pJ; 64-bit read of a 32 KB SRAM ~20 pJ.
_MULT_8B_J = 0.2e-12
_ADD_8B_J, _ADD_32B_J = 0.03e-12, 0.1e-12
_FP32_MULT_J, _FP32_ADD_J = 3.7e-12, 0.9e-12
_SRAM_32KB_64BIT_READ_J = 20e-12

ENERGY = EnergyTable(
    # HBM2 ~3.9 pJ/bit: O'Connor et al., "Fine-Grained DRAM", MICRO 2017 (HBM2 access energy)
    dram_per_bit_j=3.9e-12,
    # Horowitz: 20 pJ per 64-bit read of a 32 KB SRAM (the key/value buffers are banked; assumption:
    # a bank is about that size, and a write costs what a read does)
    sram_per_bit_j=_SRAM_32KB_64BIT_READ_J / 64,
    # assumption: multiplier energy grows with the square of the width, from Horowitz's 8-bit 0.2 pJ
    mult_12b_j=_MULT_8B_J * (12 / 8) ** 2,
    # assumption: adder energy linear in width between Horowitz's 8-bit and 32-bit points
    add_24b_j=_ADD_8B_J + (_ADD_32B_J - _ADD_8B_J) * (24 - 8) / (32 - 8),
    compare_12b_j=_ADD_8B_J + (_ADD_32B_J - _ADD_8B_J) * (12 - 8) / (32 - 8),
    # assumption: a softmax element costs three fp32 multiply-adds (exponent approximation,
    # accumulation, division), from Horowitz's fp32 numbers
    softmax_per_element_j=3 * (_FP32_MULT_J + _FP32_ADD_J),
)
"""The table the suite uses."""


@dataclass
class SpAttenEnergy:
    """Event counts of one simulated run; :meth:`joules` prices them with a table."""

    dram_bits: float = 0.0
    sram_bits: float = 0.0
    multiplies: float = 0.0
    softmax_elements: float = 0.0
    comparisons: float = 0.0

    def add(self, other: SpAttenEnergy, scale: float = 1.0) -> None:
        self.dram_bits += other.dram_bits * scale
        self.sram_bits += other.sram_bits * scale
        self.multiplies += other.multiplies * scale
        self.softmax_elements += other.softmax_elements * scale
        self.comparisons += other.comparisons * scale

    def breakdown_j(self, table: EnergyTable = ENERGY) -> dict[str, float]:
        return {
            "dram": self.dram_bits * table.dram_per_bit_j,
            "sram": self.sram_bits * table.sram_per_bit_j,
            # a multiply-accumulate: one multiply and one accumulate add
            "mac": self.multiplies * (table.mult_12b_j + table.add_24b_j),
            "softmax": self.softmax_elements * table.softmax_per_element_j,
            "topk": self.comparisons * table.compare_12b_j,
        }

    def joules(self, table: EnergyTable = ENERGY) -> float:
        return float(sum(self.breakdown_j(table).values()))


BASELINE_POWER_W: dict[str, float] = {
    "titan-xp": 250.0,        # NVIDIA TITAN Xp specifications: 250 W graphics card power (assumption: drawn throughout)
    "xeon-e5-2640v4": 90.0,   # Intel ARK, Xeon E5-2640 v4: 90 W TDP (assumption: drawn throughout)
}


def baseline_energy_j(hardware_name: str, latency_s: float) -> float:
    """Energy of a baseline run: its power (table above) times its modelled time."""
    return BASELINE_POWER_W[hardware_name] * latency_s
