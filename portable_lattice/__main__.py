"""``python -m portable_lattice``: the command line."""
import sys

from .cli import main

sys.exit(main())
