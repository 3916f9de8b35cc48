r"""Learned energies (Secs. 3-5 of [DCL]): the autoregressive energy and the extensive tile network.

* :class:`ModelEnergy` - E(sigma) = -beta_O^-1 ln P_theta(sigma) + C (Eq. 6) from an
  autoregressive model trained at beta_O. Global: any change needs a new
  evaluation of the whole configuration, and the model is size-specific.
* :class:`EDNN` - the extensive deep neural network: the lattice is cut into
  f x f focus tiles, each read with a context of c sites around it (an
  (f + 2c)^2 window, periodic), a small MLP maps the window to a tile energy,
  and E is the sum over tiles. It transfers to any L divisible by f, and a
  change at one site touches only the tiles whose windows contain it.
* :class:`EDNNEnergy` - the EDNN as an energy provider for
  :class:`portable_lattice.theories.LearnedEnergy`: whole-lattice energies, the
  energy change of many sites at once (for sites no two of which share a window:
  stride f + 2c), and of one site per chain from its few tiles only.

The constant C: ``"random"`` makes the mean over uniformly random configurations
zero (the authors' first code path), ``"samples"`` the mean over the model's own
samples, and a number ``ground_state`` per site fixes the energy of the fully
aligned configurations (the authors' Table 3 choice, -2 J per spin for Ising).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from portable_lattice._checks import positive_float, positive_int
from portable_lattice.backends.torch_bridge import from_torch, to_torch

__all__ = ["EDNN", "EDNNEnergy", "ModelEnergy", "train_ednn", "merge_ednns", "save_ednn", "load_ednn", "EDNN_FORMAT"]

EDNN_FORMAT = "portable_lattice.ednn/1"


def _values(q: int) -> list[int]:
    return [-1, 1] if q == 2 else list(range(q))


class EDNN(nn.Module):
    """Tile network: focus ``focus`` x ``focus``, ``context`` sites around, MLP ``hidden`` (ReLU).

    Input coding per window site: the spin (+-1) for q = 2, a one-hot vector for q states.
    The paper's network (f = 2, c = 1, hidden (32, 64)) has 2 721 parameters.
    """

    def __init__(self, q: int = 2, *, focus: int = 2, context: int = 1, hidden: tuple = (32, 64)):
        super().__init__()
        positive_int("q", q)
        positive_int("focus", focus)
        if not isinstance(context, int) or context < 0:
            raise ValueError(f"context must be a non-negative integer, got context={context!r}")
        hidden = tuple(int(h) for h in hidden)
        for h in hidden:
            positive_int("hidden", h)
        self.q, self.focus, self.context, self.hidden = q, focus, context, hidden
        self.window = focus + 2 * context
        cin = self.window ** 2 * (1 if q == 2 else q)
        layers, width = [], cin
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self._maps: dict = {}

    @property
    def reach(self) -> int:
        """Sites at least this far apart (in one coordinate) never share a window."""
        return self.window

    def config(self) -> dict:
        return {"q": self.q, "focus": self.focus, "context": self.context, "hidden": list(self.hidden)}

    def check_size(self, L: int) -> None:
        if L % self.focus:
            raise ValueError(f"the EDNN's focus f={self.focus} must divide L, got L={L}")
        if L < self.window:
            raise ValueError(f"the EDNN's window ({self.window} sites) is larger than the lattice, L={L}")

    def window_map(self, L: int, device) -> torch.Tensor:
        """(tiles, window^2) flat site indices of every tile's window (periodic)."""
        key = (L, str(device))
        if key not in self._maps:
            self.check_size(L)
            f, c, w = self.focus, self.context, self.window
            T = L // f
            a = torch.arange(T)
            off = torch.arange(w) - c
            rows = (a[:, None] * f + off[None, :]) % L          # (T, w)
            r = rows[:, None, :, None].expand(T, T, w, w)
            cc = rows[None, :, None, :].expand(T, T, w, w)
            self._maps[key] = (r * L + cc).reshape(T * T, w * w).to(device)
        return self._maps[key]

    def _code(self, windows: torch.Tensor) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype
        if self.q == 2:
            return windows.to(dtype)
        return F.one_hot(windows.long(), self.q).to(dtype).flatten(-2)

    def tile_energies(self, spins: torch.Tensor) -> torch.Tensor:
        """(B, tiles) energies of every tile."""
        B, L = spins.shape[0], spins.shape[1]
        idx = self.window_map(L, spins.device)
        windows = spins.reshape(B, -1)[:, idx]                 # (B, T, w^2)
        return self.mlp(self._code(windows)).squeeze(-1)

    def forward(self, spins: torch.Tensor) -> torch.Tensor:
        """(B,) total energies of (B, L, L) spins."""
        return self.tile_energies(spins).sum(dim=1)

    def site_tiles(self, L: int, device) -> torch.Tensor:
        """(V, k) the tiles whose windows contain each site (k = ceil(window / f)^2 per site)."""
        key = ("sites", L, str(device))
        if key not in self._maps:
            idx = self.window_map(L, "cpu")
            lists = [[] for _ in range(L * L)]
            for t, row in enumerate(idx.tolist()):
                for s in row:
                    lists[s].append(t)
            k = max(len(x) for x in lists)
            if any(len(x) != k for x in lists):
                raise AssertionError("every site lies in the same number of windows on a torus")
            self._maps[key] = torch.tensor(lists, dtype=torch.long).to(device)
        return self._maps[key]


def train_ednn(model: EDNN, configs: Any, energies: Any, *, epochs: int = 20, batch: int = 256, lr: float = 1e-3,
               seed: int = 0, val: tuple | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Fit the EDNN to energy labels by mean squared error (Adam).

    Returns ``{"train_rmse": [...], "val_rmse": [...], "seconds"}`` per epoch (total energies, units of J).
    """
    positive_int("epochs", epochs)
    positive_int("batch", batch)
    positive_float("lr", lr)
    x = torch.as_tensor(np.asarray(configs)) if not isinstance(configs, torch.Tensor) else configs
    y = torch.as_tensor(np.asarray(energies)) if not isinstance(energies, torch.Tensor) else energies
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"configs and energies must have one entry each, got {x.shape[0]} and {y.shape[0]}")
    model.check_size(int(x.shape[1]))
    dtype = model.mlp[0].weight.dtype
    y = y.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = {"train_rmse": [], "val_rmse": []}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for start in range(0, x.shape[0], batch):
            sel = perm[start:start + batch]
            loss = F.mse_loss(model(x[sel]), y[sel])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * sel.shape[0]
        hist["train_rmse"].append(math.sqrt(total / x.shape[0]))
        if val is not None:
            hist["val_rmse"].append(ednn_rmse(model, *val))
        if log is not None:
            log(f"EDNN epoch {epoch + 1}/{epochs}: training RMSE {hist['train_rmse'][-1]:.4f}")
    model.eval()
    hist["seconds"] = time.perf_counter() - t0
    return hist


def merge_ednns(nets: list) -> EDNN:
    """One EDNN whose tile energy is the mean of ``nets``' (same q, focus, context and depth).

    The hidden layers are stacked block-diagonally, so the result is an ordinary EDNN with
    hidden widths summed over the members; it equals the ensemble mean exactly.
    """
    nets = list(nets)
    if not nets:
        raise ValueError("merge_ednns needs at least one EDNN")
    a = nets[0]
    for n in nets[1:]:
        if (n.q, n.focus, n.context, len(n.hidden)) != (a.q, a.focus, a.context, len(a.hidden)):
            raise ValueError("merge_ednns needs EDNNs with the same q, focus, context and number of layers")
    merged = EDNN(a.q, focus=a.focus, context=a.context,
                  hidden=tuple(sum(n.hidden[i] for n in nets) for i in range(len(a.hidden))))
    merged = merged.to(dtype=a.mlp[0].weight.dtype, device=a.mlp[0].weight.device)
    linears = [[m for m in n.mlp if isinstance(m, nn.Linear)] for n in nets]
    out = [m for m in merged.mlp if isinstance(m, nn.Linear)]
    K = len(nets)
    with torch.no_grad():
        for li, lin in enumerate(out):
            lin.weight.zero_()
            lin.bias.zero_()
            r = c = 0
            for member in linears:
                w, b = member[li].weight, member[li].bias
                if li == 0:                       # all members read the same window
                    lin.weight[r:r + w.shape[0]] = w
                    lin.bias[r:r + w.shape[0]] = b
                elif li == len(out) - 1:          # the output: the mean over members
                    lin.weight[:, c:c + w.shape[1]] = w / K
                    lin.bias += b / K
                else:
                    lin.weight[r:r + w.shape[0], c:c + w.shape[1]] = w
                    lin.bias[r:r + w.shape[0]] = b
                r += w.shape[0]
                c += w.shape[1]
    merged.eval()
    return merged


def ednn_rmse(model: EDNN, configs: Any, energies: Any, batch: int = 4096) -> float:
    """Root mean squared error of the EDNN's total energies against labels."""
    x = configs if isinstance(configs, torch.Tensor) else torch.as_tensor(np.asarray(configs))
    y = energies if isinstance(energies, torch.Tensor) else torch.as_tensor(np.asarray(energies))
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)])
    return float(((pred.double() - y.double()) ** 2).mean().sqrt())


def save_ednn(path: str, model: EDNN, info: dict | None = None) -> None:
    torch.save({"format": EDNN_FORMAT, "config": model.config(), "state": model.state_dict(),
                "info": dict(info or {})}, path)


def load_ednn(path: str, *, q: int | None = None) -> tuple[EDNN, dict]:
    from .files import load_blob
    blob = load_blob(path, "EDNN", "format", EDNN_FORMAT)
    cfg = dict(blob["config"])
    if q is not None and cfg["q"] != q:
        raise ValueError(f"the EDNN in {path!r} has q={cfg['q']}, but q={q} was asked for")
    model = EDNN(cfg.pop("q"), focus=cfg["focus"], context=cfg["context"], hidden=tuple(cfg["hidden"]))
    model.load_state_dict(blob["state"])
    model.eval()
    return model, blob["info"]


# --- energy providers for the core ----------------------------------------------------------
class _Provider:
    """What the two providers share: the shift C, conversions, and a state check."""

    shift: float = 0.0

    def _t(self, s):
        return to_torch(s, self.device)

    def energy(self, s: Any, dtype: Any) -> Any:
        """E(sigma) per chain, as an array of ``s``'s namespace in ``dtype``."""
        with torch.no_grad():
            e = self._energy(self._t(s)).double() + self.shift
        return from_torch(e, s, dtype)

    def set_constant(self, how: Any, L: int, *, n: int = 4096, seed: int = 0, samples: Any = None) -> float:
        """Fix C: ``"random"`` (mean over random configurations is zero), ``"samples"`` (mean
        over ``samples`` is zero) or a number: the energy per site of the aligned ground states."""
        self.shift = 0.0
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if how == "random":
                vals = torch.tensor(_values(self.q), dtype=torch.int8)
                x = vals[torch.randint(self.q, (n, L, L), generator=gen)].to(self.device)
                self.shift = -float(self._energy(x).double().mean())
            elif how == "samples":
                if samples is None:
                    raise ValueError("C from 'samples' needs samples")
                self.shift = -float(self._energy(self._t(samples)).double().mean())
            elif isinstance(how, (int, float)) and math.isfinite(how):
                vals = _values(self.q)
                ground = torch.stack([torch.full((L, L), v, dtype=torch.int8) for v in vals]).to(self.device)
                self.shift = float(how) * L * L - float(self._energy(ground).double().mean())
            else:
                raise ValueError(f"the constant C must be 'random', 'samples' or a ground-state energy per site, "
                                 f"got {how!r}")
        return self.shift


class ModelEnergy(_Provider):
    """E = -beta_O^-1 ln P_theta(sigma) + C from an autoregressive model (Eq. 6 of [DCL]).

    Global: ``reach`` is None (no two sites may change at once), and ``site_delta`` evaluates
    the whole configuration twice.
    """

    reach = None

    def __init__(self, model: Any, beta_obs: float, *, chunk: int = 4096):
        positive_float("beta_obs", beta_obs)
        self.model, self.beta_obs, self.chunk = model, float(beta_obs), chunk
        self.q, self.L = model.q, model.L
        self.device = model.values.device
        model.eval()

    def _energy(self, x):
        out = [self.model.log_prob(x[i:i + self.chunk]) for i in range(0, x.shape[0], self.chunk)]
        return -torch.cat(out) / self.beta_obs

    def site_delta(self, s: Any, flat_index: Any, new_values: Any, dtype: Any) -> Any:
        """E after changing site ``flat_index`` to ``new_values`` (one per chain) minus E before."""
        x = self._t(s)
        i = to_torch(flat_index, self.device).long()
        y = x.reshape(x.shape[0], -1).clone()
        y[torch.arange(y.shape[0], device=y.device), i] = to_torch(new_values, self.device).to(y.dtype)
        with torch.no_grad():
            d = self._energy(y.reshape(x.shape)).double() - self._energy(x).double()
        return from_torch(d, flat_index, dtype)


class EDNNEnergy(_Provider):
    """The EDNN as an energy provider (any L divisible by its focus)."""

    def __init__(self, model: EDNN):
        self.model = model
        self.q = model.q
        self.L = None                      # extensive: any lattice the tiling fits
        self.device = model.mlp[0].weight.device
        model.eval()

    @property
    def reach(self) -> int:
        return self.model.reach

    def _energy(self, x):
        return self.model(x)

    def delta(self, s: Any, t: Any, dtype: Any) -> Any:
        """Per site: E(t) - E(s) attributed to each changed site, zero elsewhere.

        Valid when no window holds two changed sites (sites on a stride-``reach`` sublattice):
        then each tile's change belongs to the one changed site in its window.
        """
        xs, xt = self._t(s), self._t(t)
        B, L = xs.shape[0], xs.shape[1]
        with torch.no_grad():
            dt = (self.model.tile_energies(xt) - self.model.tile_energies(xs)).double()   # (B, T)
        idx = self.model.window_map(L, xs.device)                                       # (T, w^2)
        per_site = torch.zeros(B, L * L, dtype=torch.float64, device=xs.device)
        per_site.index_add_(1, idx.reshape(-1), dt[:, :, None].expand(-1, -1, idx.shape[1]).reshape(B, -1))
        changed = (xs != xt).reshape(B, -1)
        out = torch.where(changed, per_site, torch.zeros_like(per_site)).reshape(xs.shape)
        return from_torch(out, s, dtype)

    def site_delta(self, s: Any, flat_index: Any, new_values: Any, dtype: Any) -> Any:
        """E after changing one site per chain minus E before, from the few tiles that see it."""
        x = self._t(s)
        B, L = x.shape[0], x.shape[1]
        i = to_torch(flat_index, self.device).long()
        tiles = self.model.site_tiles(L, x.device)[i]                     # (B, k)
        idx = self.model.window_map(L, x.device)[tiles]                   # (B, k, w^2)
        flat = x.reshape(B, -1)
        before = torch.gather(flat, 1, idx.reshape(B, -1)).reshape(idx.shape)
        after = torch.where(idx == i[:, None, None], to_torch(new_values, self.device).to(x.dtype)[:, None, None],
                            before)
        with torch.no_grad():
            code = self.model._code
            d = (self.model.mlp(code(after)) - self.model.mlp(code(before))).squeeze(-1).double().sum(dim=1)
        return from_torch(d, flat_index, dtype)
