"""`python -m carbonlab` is the `carbonlab` command (for environments whose scripts are not on PATH)."""

import sys

from carbonlab.cli import main

sys.exit(main())
