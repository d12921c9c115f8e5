"""Expert-placement solvers for expert-parallel MoE (the MoETuner issue builds them here).

Imports numpy and pulp only; never simpy. Solvers will follow one protocol and be discoverable
through the ``hwsim.placement`` entry-point group.
"""
