"""Runs: the driver loop over kernels, one ``simulate`` for every theory, MCRG runs, file I/O."""
from .driver import FrozenChainWarning, NonFiniteFieldError, Progress, RunResult, run
from .simulate import ALGORITHMS, DEFAULT_ALGORITHM, KNOBS, make_kernel, simulate

__all__ = ["run", "RunResult", "NonFiniteFieldError", "FrozenChainWarning", "Progress", "simulate", "make_kernel",
           "ALGORITHMS", "DEFAULT_ALGORITHM", "KNOBS"]
