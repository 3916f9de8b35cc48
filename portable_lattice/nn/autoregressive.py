r"""Autoregressive models of spin configurations: exact log P, exact sampling (Sec. 3 of [DCL]).

P(sigma) = P(sigma_1) prod_i P(sigma_i | sigma_<i) over a fixed site ordering, with
P(sigma_1) = 1/q (uniform, as in [DCL]). Two architectures:

* :class:`GRUModel` - the paper's: a GRU reads the spins one at a time along a
  ``"spiral"`` (from the centre, the authors' code) or ``"snake"`` ordering.
  One pass per sequence for log P (teacher forcing), V sequential steps to sample.
* :class:`MaskedConvModel` - a PixelCNN / VAN masked-convolution model in raster
  order: log P of a batch in **one** parallel pass, which is what makes it the fast
  one on a CPU (a GRU over 256 steps is slow); sampling takes V passes.

Two output heads:

* ``head="likelihood"`` (default): logits, trained by cross-entropy = -log P
  (maximum likelihood; the validation negative log-likelihood per site is the
  held-out score).
* ``head="regression"``: the paper-faithful one. A linear output y trained by mean
  squared error on +-1 targets (one-hot targets for q states); probabilities
  p(sigma_i) = |y + sigma_i| / 2, which is a probability only for |y| <= 1. The
  authors do not clip; here y is clipped to [-1 + clip, 1 - clip] (and for q
  states p_k = max(y_k, clip) normalised), ``clip = 1e-6`` by default, so every
  configuration has p >= clip / 2 per site. ``clip = 0`` reproduces the unclipped
  head and a configuration of probability 0 is then an error, never a silent -inf.

``symmetrize=True`` averages the model over the global symmetry of the states
(sigma -> -sigma for Ising, the q cyclic shifts for q states):
q_sym(sigma) = mean_g q(g sigma). It is still exactly normalised and exactly
sampled (draw from q, apply a uniformly random g).

Spins come and go in the theory's values: +-1 (int8) for Ising and
Edwards-Anderson, 0..q-1 for Potts and the clock model.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from portable_lattice._checks import choice, positive_int
from portable_lattice.backends.torch_bridge import from_torch

__all__ = ["site_order", "GRUModel", "MaskedConvModel", "train_autoregressive", "save_model", "load_model",
           "build_model", "ModelProposal", "MODEL_FORMAT"]

MODEL_FORMAT = "portable_lattice.autoregressive/1"


def site_order(L: int, ordering: str) -> list[int]:
    """Flat site indices (row-major) in reading order: ``"raster"``, ``"snake"`` (boustrophedon)
    or ``"spiral"`` (outwards from the centre site (L//2, L//2))."""
    positive_int("L", L)
    choice("ordering", ordering, ("raster", "snake", "spiral"))
    if ordering == "raster":
        return list(range(L * L))
    if ordering == "snake":
        return [r * L + (c if r % 2 == 0 else L - 1 - c) for r in range(L) for c in range(L)]
    r, c = L // 2, L // 2
    out, seen = [], set()
    step, d = 1, 0
    moves = ((0, 1), (1, 0), (0, -1), (-1, 0))
    if 0 <= r < L and 0 <= c < L:
        out.append(r * L + c)
        seen.add((r, c))
    while len(out) < L * L:
        for _ in range(2):
            dr, dc = moves[d % 4]
            for _ in range(step):
                r, c = r + dr, c + dc
                if 0 <= r < L and 0 <= c < L and (r, c) not in seen:
                    seen.add((r, c))
                    out.append(r * L + c)
            d += 1
        step += 1
    return out


class _Autoregressive(nn.Module):
    """What both architectures share: state coding, symmetrisation, log P and sampling around
    the architecture's conditional log-probabilities."""

    def _setup(self, L: int, q: int, head: str, clip: float, symmetrize: bool):
        positive_int("L", L)
        positive_int("q", q)
        if q < 2:
            raise ValueError(f"q must be at least 2, got q={q}")
        choice("head", head, ("likelihood", "regression"))
        if not (isinstance(clip, (int, float)) and 0.0 <= clip < 1.0):
            raise ValueError(f"clip must be in [0, 1), got clip={clip!r}")
        self.L, self.q, self.head, self.clip, self.symmetrize = L, q, head, float(clip), bool(symmetrize)
        self.V = L * L
        # +-1 spins for q = 2 (index 0 <-> -1, 1 <-> +1); 0..q-1 otherwise
        self.register_buffer("values", torch.tensor([-1, 1] if q == 2 else list(range(q)), dtype=torch.int8),
                             persistent=False)

    # --- coding -------------------------------------------------------------------------
    def to_index(self, spins: torch.Tensor) -> torch.Tensor:
        """(B, L, L) spins in the theory's values -> long state indices 0..q-1."""
        if spins.ndim != 3 or tuple(spins.shape[1:]) != (self.L, self.L):
            raise ValueError(f"this model is for {self.L} x {self.L} lattices (autoregressive models are "
                             f"size-specific), got spins of shape {tuple(spins.shape)}")
        s = spins.long()
        idx = (s + 1) // 2 if self.q == 2 else s
        if bool(((idx < 0) | (idx >= self.q)).any()) or (self.q == 2 and bool(((s != 1) & (s != -1)).any())):
            raise ValueError(f"spins hold values outside the model's {self.q} states {self.values.tolist()}")
        return idx

    def from_index(self, idx: torch.Tensor) -> torch.Tensor:
        return self.values[idx]

    # --- the architecture's part --------------------------------------------------------------
    def outputs(self, idx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Raw head outputs for every site, in row-major site order: (B, V, q) logits or regression values."""
        raise NotImplementedError

    def _head_logp(self, out: torch.Tensor) -> torch.Tensor:
        """Log conditional probabilities (..., q) from the head's outputs (..., q or 1)."""
        if self.head == "likelihood":
            logp = F.log_softmax(out, dim=-1)
        elif self.q == 2:
            # p(sigma) = |y + sigma| / 2 with y clipped: p(+1) = (1 + y)/2, p(-1) = (1 - y)/2
            y = out[..., 1] - out[..., 0] if out.shape[-1] == 2 else out[..., 0]
            y = y.clamp(-1.0 + self.clip, 1.0 - self.clip)
            p = torch.stack(((1.0 - y) / 2.0, (1.0 + y) / 2.0), dim=-1).abs()
            logp = torch.log(p)
        else:
            p = out.clamp(min=self.clip) if self.clip > 0 else out.clamp(min=0.0)
            logp = torch.log(p) - torch.log(p.sum(dim=-1, keepdim=True))
        return logp

    def _log_cond(self, out: torch.Tensor) -> torch.Tensor:
        """(B, V, q) log conditional probabilities, row-major; P(sigma_1) = 1/q whatever the
        network says at the first site read."""
        logp = self._head_logp(out).clone()
        logp[:, self.order[0], :] = -math.log(self.q)
        return logp

    def _log_prob_raw(self, idx: torch.Tensor) -> torch.Tensor:
        logp = self._log_cond(self.outputs(idx))
        flat = idx.reshape(idx.shape[0], -1)
        return logp.gather(-1, flat.unsqueeze(-1)).squeeze(-1).sum(dim=1)

    def log_prob(self, spins: torch.Tensor) -> torch.Tensor:
        """Exact log P(sigma) per configuration, (B,), in the model's dtype."""
        idx = self.to_index(spins)
        if not self.symmetrize:
            lp = self._log_prob_raw(idx)
        else:
            lp = torch.logsumexp(torch.stack([self._log_prob_raw((idx + k) % self.q) for k in range(self.q)]),
                                 dim=0) - math.log(self.q)
        if not bool(torch.isfinite(lp).all()):
            bad = int((~torch.isfinite(lp)).nonzero()[0, 0])
            raise ValueError(f"the model gives configuration {bad} probability 0 (log P = {float(lp[bad].detach())}): the "
                             f"regression head with clip={self.clip} cannot weight it; use clip > 0 or "
                             f"head='likelihood'")
        return lp

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n exact samples and their log P: ((n, L, L) int8 spins, (n,) log P)."""
        positive_int("n", n)
        was = self.training
        self.eval()
        try:
            dev = self.values.device
            idx = self._sample_index(n, generator, dev)
            if self.symmetrize:
                k = torch.randint(self.q, (n, 1, 1), generator=generator, device=dev)
                idx = (idx + k) % self.q
            spins = self.from_index(idx)
            return spins, self.log_prob(spins)
        finally:
            self.train(was)

    def _draw(self, logp: torch.Tensor, generator) -> torch.Tensor:
        """One categorical draw per row of (B, q) log-probabilities."""
        return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)

    def config(self) -> dict:
        return {k: getattr(self, k) for k in self._config_keys}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class GRUModel(_Autoregressive):
    """GRU over an ordering of the sites (the paper's RNN: 1 layer, hidden 378, spiral order)."""

    _config_keys = ("L", "q", "hidden", "layers", "ordering", "head", "clip", "symmetrize", "dropout")
    arch = "gru"

    def __init__(self, L: int, q: int = 2, *, hidden: int = 64, layers: int = 1, ordering: str = "spiral",
                 head: str = "likelihood", clip: float = 1e-6, symmetrize: bool = False, dropout: float = 0.0):
        super().__init__()
        self._setup(L, q, head, clip, symmetrize)
        positive_int("hidden", hidden)
        positive_int("layers", layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={dropout!r}")
        self.hidden, self.layers, self.ordering, self.dropout = hidden, layers, ordering, float(dropout)
        order = site_order(L, ordering)
        self.order = order
        self.register_buffer("perm", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)
        self.gru = nn.GRU(q, hidden, num_layers=layers, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, q if head == "likelihood" or q > 2 else 1)

    def _inputs(self, idx_seq: torch.Tensor) -> torch.Tensor:
        """One-hot of the previous spin at every step; zeros at the first."""
        x = F.one_hot(idx_seq, self.q).to(self.out.weight.dtype)
        return torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)

    def outputs(self, idx: torch.Tensor) -> torch.Tensor:
        seq = idx.reshape(idx.shape[0], -1)[:, self.perm]
        h, _ = self.gru(self._inputs(seq))
        out = self.out(self.drop(h))              # reading order
        return out[:, self.inverse]              # back to row-major site order

    def _sample_index(self, n, generator, dev):
        dtype = self.out.weight.dtype
        seq = torch.empty(n, self.V, dtype=torch.long, device=dev)
        x = torch.zeros(n, 1, self.q, dtype=dtype, device=dev)
        h = None
        for t in range(self.V):
            o, h = self.gru(x, h)
            out = self.out(o[:, 0])
            if t == 0:
                logp = torch.full((n, self.q), -math.log(self.q), dtype=dtype, device=dev)
            else:
                logp = self._head_logp(out)
            seq[:, t] = self._draw(logp, generator)
            x = F.one_hot(seq[:, t], self.q).to(dtype).unsqueeze(1)
        idx = torch.empty_like(seq)
        idx[:, self.perm] = seq
        return idx.reshape(n, self.L, self.L)


class _MaskedConv(nn.Conv2d):
    """A convolution that sees only sites before the centre in raster order (and the centre
    itself for ``include_centre``)."""

    def __init__(self, cin, cout, half: int, include_centre: bool):
        k = 2 * half + 1
        super().__init__(cin, cout, k, padding=half)
        mask = torch.zeros(k, k)
        mask[:half, :] = 1
        mask[half, :half + (1 if include_centre else 0)] = 1
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class MaskedConvModel(_Autoregressive):
    """PixelCNN / VAN: masked convolutions in raster order (zero padding keeps it causal), residual
    blocks, ``channels`` wide, ``layers`` deep, kernels of half-width ``half``."""

    _config_keys = ("L", "q", "channels", "layers", "half", "head", "clip", "symmetrize")
    arch = "pixelcnn"

    def __init__(self, L: int, q: int = 2, *, channels: int = 32, layers: int = 3, half: int = 3,
                 head: str = "likelihood", clip: float = 1e-6, symmetrize: bool = False):
        super().__init__()
        self._setup(L, q, head, clip, symmetrize)
        positive_int("channels", channels)
        positive_int("layers", layers)
        positive_int("half", half)
        self.channels, self.layers, self.half, self.ordering = channels, layers, half, "raster"
        self.order = list(range(self.V))
        self.first = _MaskedConv(q, channels, half, include_centre=False)
        self.blocks = nn.ModuleList(_MaskedConv(channels, channels, half, include_centre=True)
                                    for _ in range(layers - 1))
        self.final = nn.Conv2d(channels, q if head == "likelihood" or q > 2 else 1, 1)

    @property
    def reach(self) -> int:
        """Rows above (and columns either side) that the output at a site depends on."""
        return self.half * self.layers

    def _net(self, idx: torch.Tensor) -> torch.Tensor:
        """Head outputs (B, q or 1, h, w) of a (B, h, w) block of state indices (zero padding at its edges)."""
        x = F.one_hot(idx, self.q).permute(0, 3, 1, 2).to(self.final.weight.dtype)
        h = F.silu(self.first(x))
        for blk in self.blocks:
            h = h + F.silu(blk(h))
        return self.final(h)

    def outputs(self, idx: torch.Tensor) -> torch.Tensor:
        return self._net(idx).flatten(2).transpose(1, 2)    # (B, V, q or 1), row-major

    def _sample_index(self, n, generator, dev, cone: bool = True):
        # The output at (r, c) depends on the inputs in rows r - R..r, columns c - R..c + R only
        # (R = half x layers). Evaluating the network on that block, cut at the lattice's edges
        # (where the zero padding is the full lattice's), gives the same output at (r, c): a wrong
        # value at a block edge inside the lattice moves at most `half` sites per layer inwards
        # and does not reach the centre. Cost per draw: (R + 1)(2R + 1) sites instead of V.
        idx = torch.zeros(n, self.L, self.L, dtype=torch.long, device=dev)
        R = self.reach if cone else self.L
        for site in range(self.V):
            r, c = divmod(site, self.L)
            if site == 0:
                logp = torch.full((n, self.q), -math.log(self.q), dtype=self.final.weight.dtype, device=dev)
            else:
                r0, c0, c1 = max(0, r - R), max(0, c - R), min(self.L, c + R + 1)
                out = self._net(idx[:, r0:r + 1, c0:c1])[:, :, r - r0, c - c0]
                logp = self._head_logp(out)
            idx[:, r, c] = self._draw(logp, generator)
        return idx


def _targets(model: _Autoregressive, idx: torch.Tensor, dtype) -> torch.Tensor:
    if model.q == 2:
        return (2 * idx - 1).to(dtype).reshape(idx.shape[0], -1)          # +-1
    return F.one_hot(idx, model.q).to(dtype).reshape(idx.shape[0], -1, model.q)


def _loss(model: _Autoregressive, idx: torch.Tensor) -> torch.Tensor:
    """Mean per site: -log P / V (likelihood head) or the mean squared error (regression head)."""
    if model.head == "likelihood":
        return -model._log_prob_raw(idx).mean() / model.V
    out = model.outputs(idx)
    y = out[..., 0] if model.q == 2 else out
    err = (y - _targets(model, idx, y.dtype)) ** 2
    mask = torch.ones(model.V, dtype=y.dtype, device=y.device)
    mask[model.order[0]] = 0.0     # the first site is not modelled (P = 1/q)
    err = err * (mask if model.q == 2 else mask[:, None])
    return err.sum() / (idx.shape[0] * (model.V - 1))


def _nll(model: _Autoregressive, spins: torch.Tensor, batch: int) -> float:
    """Held-out negative log-likelihood per site (of the symmetrised model when it is one)."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, spins.shape[0], batch):
            total += float(-model.log_prob(spins[start:start + batch]).sum())
    return total / (spins.shape[0] * model.V)


def train_autoregressive(model: _Autoregressive, train: Any, val: Any = None, *, epochs: int = 10,
                         batch: int = 256, lr: float = 1e-3, seed: int = 0, augment: bool = False,
                         log: Callable[[str], None] | None = None) -> dict:
    """Fit ``model`` to spin configurations (N, L, L) with Adam.

    ``augment`` adds the globally transformed copies of each batch (the states' symmetry).
    Returns ``{"train_loss": [...], "val_nll": [...], "train_nll", "val_nll_final", "seconds"}``:
    per epoch the mean training loss (per site) and the held-out negative log-likelihood per site
    (nats), which for a likelihood head is the same quantity on unseen data.
    """
    positive_int("epochs", epochs)
    positive_int("batch", batch)
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got lr={lr!r}")
    train = _as_spins(train)
    val = None if val is None else _as_spins(val)
    idx_all = model.to_index(train.to(model.values.device))
    if val is not None:
        model.to_index(val)  # checks the size before any training
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = {"train_loss": [], "val_nll": []}
    t0 = time.perf_counter()
    n = idx_all.shape[0]
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, batch):
            b = idx_all[perm[start:start + batch]]
            if augment:
                b = torch.cat([(b + k) % model.q for k in range(model.q)])
            loss = _loss(model, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * b.shape[0]
            count += b.shape[0]
        hist["train_loss"].append(total / count)
        if val is not None:
            hist["val_nll"].append(_nll(model, val, 4 * batch))
        if log is not None:
            vl = f", validation -log P/V {hist['val_nll'][-1]:.5f}" if val is not None else ""
            log(f"epoch {epoch + 1}/{epochs}: training loss {hist['train_loss'][-1]:.5f}{vl}")
    model.eval()
    hist["seconds"] = time.perf_counter() - t0
    hist["train_nll"] = _nll(model, train[: min(n, 20000)], 4 * batch)
    hist["val_nll_final"] = hist["val_nll"][-1] if hist["val_nll"] else float("nan")
    return hist


def _as_spins(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.from_numpy(np.asarray(x))


ARCHITECTURES = {"gru": GRUModel, "pixelcnn": MaskedConvModel}


def build_model(arch: str, **config) -> _Autoregressive:
    choice("arch", arch, tuple(ARCHITECTURES))
    return ARCHITECTURES[arch](**config)


def save_model(path: str, model: _Autoregressive, info: dict | None = None) -> None:
    """Weights, architecture and provenance (theory, beta_O, data, training curves) in one file."""
    torch.save({"format": MODEL_FORMAT, "arch": model.arch, "config": model.config(),
                "state": model.state_dict(), "info": dict(info or {})}, path)


def load_model(path: str, *, arch: str | None = None, L: int | None = None, q: int | None = None
               ) -> tuple[_Autoregressive, dict]:
    """A saved model and its info; a file of another architecture, lattice size or q is an error."""
    from .files import load_blob
    blob = load_blob(path, "autoregressive model", "format", MODEL_FORMAT)
    cfg = blob["config"]
    for name, want, have in (("arch", arch, blob["arch"]), ("L", L, cfg["L"]), ("q", q, cfg["q"])):
        if want is not None and want != have:
            raise ValueError(f"the model in {path!r} has {name}={have!r}, but {name}={want!r} was asked for")
    model = build_model(blob["arch"], **cfg)
    model.load_state_dict(blob["state"])
    model.eval()
    return model, blob["info"]


class ModelProposal:
    """An autoregressive model as the global proposal of
    :class:`~portable_lattice.samplers.IndependenceMetropolis`: ``(rng, like) -> (spins, log_q)``
    in ``like``'s namespace and device, fresh exact samples from the model's own torch generator
    (seeded by ``seed``: the chain is reproducible). ``log_q`` is float64.
    """

    def __init__(self, model: _Autoregressive, seed: int = 0):
        self.model = model
        self.generator = torch.Generator(device=model.values.device).manual_seed(int(seed))

    def __call__(self, rng: Any, like: Any):
        import array_api_compat as aac
        if tuple(like.shape[1:]) != (self.model.L, self.model.L):
            raise ValueError(f"the model is for {self.model.L} x {self.model.L} lattices (autoregressive models "
                             f"are size-specific), the chains have shape {tuple(like.shape)}")
        spins, log_q = self.model.sample(int(like.shape[0]), self.generator)
        xp = aac.array_namespace(like)
        return from_torch(spins, like), from_torch(log_q.double(), like, xp.float64)
