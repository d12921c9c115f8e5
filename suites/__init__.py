"""Named benchmark suites and the ``hwsim`` command line.

A suite runs a system model (simulated records) and, when asked, the matching real kernels
(measured records). Suites are found through the ``hwsim.suites`` entry-point group, so a
package outside hwsim can add one.
"""
