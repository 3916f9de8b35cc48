"""The backend adapter for neural surrogates: torch modules called on fields of any backend.

:class:`TorchEnsemble` wraps one torch module or an ensemble of N modules of one
architecture and is a gradient provider for
:mod:`portable_lattice.surrogates`: called on a field (chains, L, ..., L) of
NumPy, CuPy, torch or array_api_strict, it returns the ensemble mean and the
unbiased member variance (Eq. 8-9 of [PEM]) as arrays of the field's
namespace, dtype and device.

* Zero-copy through DLPack (or NumPy's buffer) when devices match (NumPy and
  torch-cpu; CuPy and torch-cuda); array_api_strict goes through a host copy.
* Explicit dtype policy: the network runs in its own dtype (float32 by
  default) and results are cast back to the field's dtype (float64 for Monte Carlo).
* Inference mode, eval mode (BatchNorm uses its running statistics), and
  chunking over chains to bound memory.
* The ensemble is evaluated in one pass, not a Python loop over models: an
  architecture that defines ``stack(members)`` (the model zoo's ResidualCNN:
  folded BatchNorm, one circular pad, grouped convolutions, one group per
  member) is fused into one network; any other goes through ``torch.func``
  (stacked parameters, vmap over members). On CPU large inputs use a loop
  over the members' inference forms instead (see ``vectorised``).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from .torch_bridge import from_torch, to_torch, torch_module

__all__ = ["TorchEnsemble", "torch_device"]

# chains x sites up to which one fused pass beats the loop on CPU (crossover measured near 1 x 48^2)
_CPU_ONE_PASS_SITES = 2304


def _torch():
    return torch_module()


def torch_device(backend: Any) -> Any:
    """The torch device holding a backend's arrays: where its surrogate's models must live.

    >>> models = [m.to(torch_device(get_backend("cupy"))) for m in models]   # doctest: +SKIP
    """
    torch = _torch()
    if backend.name == "torch":
        return backend.device
    if backend.name == "cupy":
        return torch.device("cuda", backend.device.id)
    return torch.device("cpu")


class TorchEnsemble:
    """Gradient provider from N torch modules (N = 1 allowed: no variance).

    Parameters
    ----------
    models : nn.Module or sequence of nn.Module
        Same architecture; map (batch, 1, L, ..., L) -> (batch, 1, L, ..., L).
    receptive_field : int, optional
        Chebyshev radius; default: the first model's ``receptive_field`` attribute.
    chunk : int, optional
        Chains per network call (memory bound); default: all at once.
    vectorised : bool or None
        Evaluate the ensemble in one pass (fused grouped convolutions, or
        torch.func vmap) or with a loop over members. None (default) picks one
        pass on CUDA; on CPU one pass for inputs up to 2304 chain-sites, where
        dispatch dominates, and the loop above, where grouped convolutions
        measured slower (`python benchmarks/bench_surrogates.py`; the figures are
        in docs/performance.md).
    """

    def __init__(self, models: Any, *, receptive_field: int | None = None, chunk: int | None = None,
                 vectorised: bool | None = None):
        torch = _torch()
        models = list(models) if isinstance(models, Sequence) else [models]
        if not models:
            raise ValueError("models must hold at least one torch module")
        for m in models:
            if not isinstance(m, torch.nn.Module):
                raise TypeError(f"models must be torch.nn.Module, got {type(m).__name__}")
        shapes = [tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("all ensemble members must share one architecture (same parameter names and shapes)")
        if receptive_field is None:
            receptive_field = getattr(models[0], "receptive_field", None)
            if receptive_field is None:
                raise ValueError("receptive_field must be given for a model that does not declare one")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got chunk={chunk!r}")
        for m in models:
            m.eval()
        self.models, self.n_members = models, len(models)
        self.receptive_field, self.chunk = int(receptive_field), chunk
        p = next(models[0].parameters())
        self.device, self.dtype = p.device, p.dtype
        self.vectorised = vectorised
        self._fused, self._loop, self._ensemble = None, models, None
        if hasattr(type(models[0]), "stack"):
            # the architecture has an inference form (folded BatchNorm, one circular pad) that also
            # fuses members into one network of grouped convolutions; both snapshot the weights
            if self.n_members > 1 and vectorised is not False:
                self._fused = type(models[0]).stack(models).to(self.device, self.dtype)
            self._loop = [type(m).stack([m]).to(self.device, self.dtype) for m in models]
        elif self.n_members > 1 and (vectorised or (vectorised is None and self.device.type == "cuda")):
            from torch.func import functional_call, stack_module_state
            self._params, self._buffers = stack_module_state(models)
            base = copy.deepcopy(models[0]).to("meta")

            def one(params, buffers, x):
                return functional_call(base, (params, buffers), (x,))
            self._ensemble = torch.func.vmap(one, in_dims=(0, 0, None))

    def _one_pass(self, xb) -> bool:
        if self._fused is None or self.vectorised is False:
            return False
        # grouped convolutions win while dispatch dominates (small inputs) and lose once arithmetic
        # does (benchmarks/bench_surrogates.py)
        return self.vectorised is True or self.device.type == "cuda" or xb.numel() <= _CPU_ONE_PASS_SITES

    # --- conversion (the torch bridge: zero-copy where devices match) ---------------------
    def _to_torch(self, phi):
        return to_torch(phi, self.device)

    def _from_torch(self, t, like):
        return from_torch(t, like)

    def members(self, x):
        """All members' predictions, shape (N, chains, L, ..., L), network dtype."""
        torch = _torch()
        x = x.to(self.dtype).unsqueeze(1)
        outs = []
        step = self.chunk or x.shape[0]
        with torch.inference_mode():
            for start in range(0, x.shape[0], step):
                xb = x[start:start + step]
                if self._one_pass(xb):
                    outs.append(self._fused(xb).transpose(0, 1).unsqueeze(2))
                elif self._ensemble is not None:
                    outs.append(self._ensemble(self._params, self._buffers, xb))
                else:
                    outs.append(torch.stack([m(xb) for m in self._loop]))
        return torch.cat(outs, dim=1).squeeze(2)

    def __call__(self, phi):
        x = self._to_torch(phi)
        preds = self.members(x)
        if tuple(preds.shape[1:]) != tuple(x.shape):
            raise ValueError(f"the surrogate's output has shape {tuple(preds.shape[1:])}, "
                             f"but the field has shape {tuple(x.shape)}")
        mean = preds.mean(dim=0)
        var = preds.var(dim=0, unbiased=True) if self.n_members > 1 else None
        return self._from_torch(mean, phi), (None if var is None else self._from_torch(var, phi))
