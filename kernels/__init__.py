"""Real kernel implementations (NumPy reference, Numba CPU, CuPy GPU) and the measurement harness.

Submodules are imported on demand so that ``import kernels`` stays cheap: nothing
here pulls in Numba compilation or CuPy. The package depends only on NumPy and
Numba (CuPy optional) and never imports the ``hwsim`` simulator.
"""

__all__: list[str] = []
