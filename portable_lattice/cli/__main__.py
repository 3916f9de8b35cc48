"""``python -m portable_lattice.cli``: the command line."""
import sys

from . import main

sys.exit(main())
