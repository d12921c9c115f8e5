"""``python -m hwsim``: the same command line as the ``hwsim`` script."""

from hwsim.suites.cli import main

raise SystemExit(main())
