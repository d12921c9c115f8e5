"""Moved to :mod:`hwsim.systems.serving.cost`; this name stays so older imports keep working."""

from hwsim.systems.serving.cost import (
                                        ALL_REDUCES_PER_LAYER,
                                        ELEMENTWISE_PER_LAYER,
                                        IterationCost,
                                        ServingConfig,
)

__all__ = ["ALL_REDUCES_PER_LAYER", "ELEMENTWISE_PER_LAYER", "IterationCost", "ServingConfig"]
