"""Training gradient surrogates and saving them with their provenance (Sec. II-III of [PEM]).

MSE loss, Adam, mini-batches of 32; an ensemble of N members, each with its own
initialisation seed and its own random subset of the training configurations.
Saved files hold weights, architecture and metadata (action parameters, lattice
size, data provenance, training curves); loading for other action parameters
warns, and loading into another architecture fails with a clear error.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch

from .rcnn import ResidualCNN

__all__ = ["train_member", "train_ensemble", "save_ensemble", "load_ensemble"]


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.from_numpy(np.asarray(x))


def train_member(model: torch.nn.Module, phi, grad, *, epochs: int, batch_size: int = 32, lr: float = 1e-3,
                 seed: int = 0, log: Callable[[str], None] | None = None) -> list[float]:
    """Fit ``model`` to (phi, grad) with MSE and Adam; returns the mean loss per epoch."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got epochs={epochs}, batch_size={batch_size}")
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    x = _as_tensor(phi).to(dtype).unsqueeze(1)
    y = _as_tensor(grad).to(dtype).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        curve.append(total / x.shape[0])
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"epoch {epoch + 1}/{epochs}: loss {curve[-1]:.4g}")
    model.eval()
    return curve


def member_subsets(n: int, n_members: int, subset: int | None, seed: int = 0,
                   disjoint: bool = False) -> list[np.ndarray]:
    """Indices of the configurations each member trains on.

    Random subsets (member i draws its own ``subset`` of the ``n``, seeded by
    ``seed + 1000 + i``, so members overlap), or with ``disjoint`` consecutive
    blocks of one permutation, so no two members share a configuration.
    """
    if subset is None:
        if disjoint:
            raise ValueError("disjoint training sets need a subset size, got subset=None")
        return [np.arange(n) for _ in range(n_members)]
    if disjoint:
        if n_members * subset > n:
            raise ValueError(f"disjoint subsets need n_members * subset <= {n} configurations, "
                             f"got {n_members} x subset={subset}")
        perm = np.random.default_rng(seed + 1000).permutation(n)
        return [perm[i * subset:(i + 1) * subset] for i in range(n_members)]
    return [np.random.default_rng(seed + 1000 + i).permutation(n)[:subset] for i in range(n_members)]


def train_ensemble(n_members: int, phi, grad, *, subset: int | None = None, epochs: int = 150,
                   channels: int = 16, kernel_size: int = 3, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0, dtype=torch.float32, disjoint: bool = False,
                   log: Callable[[str], None] | None = None):
    """N ResidualCNN members, each initialised from ``seed + i`` and trained on its own
    ``subset`` of the configurations (all of them if None; random and overlapping, or
    with ``disjoint`` non-overlapping, see :func:`member_subsets`). Returns (models, curves)."""
    n = int(_as_tensor(phi).shape[0])
    if n_members < 1:
        raise ValueError(f"n_members must be positive, got n_members={n_members}")
    if subset is not None and not 2 <= subset <= n:
        raise ValueError(f"subset must be between 2 and the {n} configurations, got subset={subset}")
    picks = member_subsets(n, n_members, subset, seed, disjoint)
    dim = _as_tensor(phi).ndim - 1
    models, curves = [], []
    for i, pick in enumerate(picks):
        torch.manual_seed(seed + i)
        model = ResidualCNN(channels, kernel_size, dim).to(dtype)
        curves.append(train_member(model, _as_tensor(phi)[pick], _as_tensor(grad)[pick], epochs=epochs,
                                   batch_size=batch_size, lr=lr, seed=seed + i,
                                   log=(lambda s, i=i: log(f"member {i}: {s}")) if log else None))
        models.append(model)
    return models, curves


def save_ensemble(path, models, metadata: dict) -> None:
    """Weights, architecture and metadata (action parameters, L, provenance, curves) in one file."""
    torch.save({"format": "portable_lattice.ensemble/1", "architecture": models[0].architecture(),
                "state_dicts": [m.state_dict() for m in models], "metadata": metadata}, path)


def load_ensemble(path, expect: dict | None = None):
    """(models, metadata). ``expect`` (e.g. {"beta": 0.5, "g": 0.1, "L": 48}) is checked
    against the stored metadata: a mismatch warns (a surrogate trained elsewhere is biased)."""
    from .files import load_blob
    blob = load_blob(path, "surrogate ensemble", "format", "portable_lattice.ensemble/1")
    arch = dict(blob["architecture"])
    if arch.pop("name") != "ResidualCNN":
        raise ValueError(f"unknown architecture in {path!s}: {blob['architecture']}")
    models = []
    for sd in blob["state_dicts"]:
        model = ResidualCNN(**arch)
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise ValueError(f"the weights in {path!s} do not fit the architecture {blob['architecture']}: "
                             f"{str(e).splitlines()[0]}") from e
        models.append(model.to(next(iter(sd.values())).dtype).eval())
    meta = blob["metadata"]
    warn_if_trained_otherwise(meta, expect, f"the ensemble in {path!s}")
    return models, meta


def warn_if_trained_otherwise(meta: dict, expect: dict | None, what: str) -> None:
    """Warn (UserWarning) for every key of ``expect`` whose stored training value differs
    (floats to a relative 1e-9): a model used at other couplings than it was trained for."""
    for key, value in (expect or {}).items():
        stored = meta.get(key)
        if stored is None or (isinstance(value, float) and not math.isclose(stored, value, rel_tol=1e-9)) \
                or (not isinstance(value, float) and stored != value):
            warnings.warn(f"{what} was trained with {key}={stored!r}, not {key}={value!r}", UserWarning, stacklevel=3)
