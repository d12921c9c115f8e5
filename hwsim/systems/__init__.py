"""System models of the four published designs, each built from the engine and the cost models."""
