"""Composite kernels: several kernels applied in turn as one step.

``Cycle([metropolis, hmc], repeats=[1, 3])`` makes one step of one Metropolis sweep followed
by three HMC trajectories. Each part leaves the target distribution invariant, so their
product does too (it is a valid, if not reversible, Markov chain). The common uses: a
local update followed by overrelaxation sweeps, or a cluster update that decorrelates the
large scales combined with a local update that thermalises the short ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._checks import positive_int
from .base import Info, info_series

__all__ = ["Cycle"]


@dataclass(frozen=True)
class Cycle:
    """``kernels`` applied in turn, each ``repeats[i]`` times (default once), as one step.

    A part's state is rebuilt from the configuration when the kernel changes (a kernel's
    cached action or gradient belongs to it). The step's Info averages each per-step series
    (acceptance, changed, cluster size) over the sub-steps that report it, so an acceptance
    is an acceptance and a cluster size a cluster size; ``delta_h`` and ``divergent`` come
    from the last sub-step that reports them.
    """

    kernels: tuple
    repeats: tuple | None = None

    def __post_init__(self):
        kernels = tuple(self.kernels)
        if not kernels:
            raise ValueError("kernels must hold at least one kernel, got kernels=()")
        for i, k in enumerate(kernels):
            if not (callable(getattr(k, "init", None)) and callable(getattr(k, "step", None))):
                raise TypeError(f"kernels[{i}] must be a kernel with init and step, got {type(k).__name__}")
        repeats = (1,) * len(kernels) if self.repeats is None else tuple(self.repeats)
        if len(repeats) != len(kernels):
            raise ValueError(f"repeats must give one count per kernel ({len(kernels)}), got repeats={repeats}")
        for i, r in enumerate(repeats):
            positive_int(f"repeats[{i}]", r)
        object.__setattr__(self, "kernels", kernels)
        object.__setattr__(self, "repeats", repeats)

    @property
    def theory(self) -> Any:
        return getattr(self.kernels[0], "theory", None)

    def init(self, x: Any) -> Any:
        for k in self.kernels[1:]:
            k.init(x)  # every part validates the start
        return self.kernels[0].init(x)

    def step(self, state: Any, rng: Any) -> tuple[Any, Info]:
        sums: dict[str, Any] = {}
        counts: dict[str, int] = {}
        last: dict[str, Any] = {}
        for i, (kernel, times) in enumerate(zip(self.kernels, self.repeats)):
            if i > 0 and kernel is not self.kernels[i - 1]:
                state = kernel.init(state.config)
            for _ in range(times):
                state, info = kernel.step(state, rng)
                for name, v in info_series(info).items():
                    sums[name] = v if name not in sums else sums[name] + v
                    counts[name] = counts.get(name, 0) + 1
                for name in ("delta_h", "divergent", "log_weight"):
                    if getattr(info, name) is not None:
                        last[name] = getattr(info, name)
        if len(self.kernels) > 1 and self.kernels[-1] is not self.kernels[0]:
            state = self.kernels[0].init(state.config)  # the next step starts with the first kernel
        return state, Info(**{name: total / counts[name] for name, total in sums.items()}, **last)
