r"""Variance-exploding diffusion models of lattice fields ([DMSQ], Sec. 3 and App. A-B), in torch.

* :class:`VESDE` - d phi = sigma^t dW on t in [0, T], std(t)^2 = (sigma^(2t) - 1) / (2 ln sigma),
  prior N(0, std(T)^2) per site (Eq. 3.6).
* :func:`dsm_loss`, :func:`train_score` - denoising score matching weighted by std(t)^2,
  one t ~ U[t_min, T] per sample (Eq. 3.4), Adam, optional Z2 flips as augmentation.
* :func:`em_sample` - Euler-Maruyama for the reverse SDE (Eq. 3.9): ``steps`` steps from T to
  ``eps``, no noise on the last step.
* :func:`flow` - the probability-flow ODE d phi/dt = -sigma^(2t) s(phi, t) / 2 (Eq. 3.13) and,
  alongside, d log p_t / dt = -div f, by fixed-step RK4 or adaptive Dormand-Prince (5(4)).
  The divergence is exact (all V directions, batched vector-Jacobian products) or a
  Skilling-Hutchinson estimate with P Gaussian or Rademacher probes (App. B), one
  integral per probe so the probe spread is known.
* :func:`ode_sample` (T -> eps, the log-density of the drawn configuration from the same
  integration) and :func:`log_likelihood` (eps -> T at given configurations).
* :class:`DiffusionProposal` - the four DM-MC routes as an independence proposal
  ``(rng, like) -> (config, log_q)`` for :mod:`portable_lattice.samplers.independence`, taking
  its random numbers from the chain's generator and returning arrays of the chain's backend.
* :func:`save_score_model` / :func:`load_score_model` - one file with architecture, weights and
  metadata, read with ``weights_only`` (no code runs while loading).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from portable_lattice._checks import positive_float, positive_int
from portable_lattice.backends.torch_bridge import from_torch, to_torch

from .train import warn_if_trained_otherwise
from .unet import ARCHITECTURES, GaussianScore

__all__ = ["VESDE", "dsm_loss", "train_score", "em_sample", "flow", "ode_sample", "log_likelihood",
           "exact_divergence_bytes", "DiffusionProposal", "ROUTES", "save_score_model", "load_score_model",
           "PROBES", "METHODS", "r_squared", "evaluate_loss",
           "train_network", "draw", "likelihood_against_action"]

PROBES = ("gaussian", "rademacher")
METHODS = ("rk4", "rk45")
#: the DM-MC routes: (sampler, divergence)
ROUTES = {"paper": ("em", "hutchinson"), "ode": ("ode", "hutchinson"), "penalty": ("ode", "hutchinson"),
          "exact": ("ode", "exact")}
_FORMAT = "portable_lattice.diffusion/1"


@dataclass(frozen=True)
class VESDE:
    """The variance-exploding SDE of [DMSQ] (sigma = 25, T = 1; sampling stops at ``eps``)."""

    sigma: float = 25.0
    T: float = 1.0
    eps: float = 1e-3

    def __post_init__(self):
        if not (isinstance(self.sigma, (int, float)) and self.sigma > 1):
            raise ValueError(f"sigma must be a number > 1, got sigma={self.sigma!r}")
        positive_float("T", self.T)
        if not 0 < self.eps < self.T:
            raise ValueError(f"eps must lie in (0, T={self.T}), got eps={self.eps!r}")

    def std(self, t):
        return torch.sqrt((self.sigma ** (2.0 * torch.as_tensor(t)) - 1.0) / (2.0 * math.log(self.sigma)))

    def g2(self, t):
        """g(t)^2 = d std^2 / dt = sigma^(2t)."""
        return self.sigma ** (2.0 * torch.as_tensor(t))

    def prior_std(self) -> float:
        return float(self.std(torch.tensor(self.T, dtype=torch.float64)))

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, std(T)^2 I) per configuration, float64."""
        s2 = self.prior_std() ** 2
        x = x.to(torch.float64)
        V = x[0].numel()
        return -0.5 * (x * x).flatten(1).sum(1) / s2 - 0.5 * V * math.log(2.0 * math.pi * s2)


def _model_dtype(model) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters())
    return p.dtype, p.device


def _torch_normal(generator: torch.Generator | None, dtype, device) -> Callable:
    return lambda shape: torch.randn(shape, generator=generator, dtype=dtype, device=device)


# --- training ------------------------------------------------------------------------------
def dsm_loss(model, x0: torch.Tensor, sde: VESDE, generator=None, t_min: float = 1e-5) -> torch.Tensor:
    """Denoising score matching weighted by std(t)^2: E |std s(x0 + std z, t) + z|^2, summed over sites."""
    n = x0.shape[0]
    t = torch.rand(n, generator=generator, dtype=x0.dtype, device=x0.device) * (sde.T - t_min) + t_min
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    std = sde.std(t)[:, None, None]
    s = model(x0 + std * z, t)
    return ((std * s + z) ** 2).flatten(1).sum(1).mean()


def train_score(model, data: torch.Tensor, sde: VESDE, *, epochs: int, batch: int = 64, lr: float = 1e-3,
                seed: int = 0, flips: bool = True, log: Callable[[str], None] | None = None,
                validation: torch.Tensor | None = None) -> dict:
    """Adam on :func:`dsm_loss` over ``data`` (N, L, L); returns {"loss": [per epoch], "validation": [...],
    "seconds"}. ``flips`` multiplies each sample by a random sign (Z2 augmentation)."""
    positive_int("epochs", epochs)
    positive_int("batch", batch)
    positive_float("lr", lr)
    dtype, device = _model_dtype(model)
    data = data.to(dtype=dtype, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve, val_curve, t0 = [], [], time.perf_counter()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(data.shape[0], generator=g)
        total, count = 0.0, 0
        for start in range(0, data.shape[0], batch):
            x0 = data[perm[start:start + batch]]
            if flips:
                sign = torch.randint(0, 2, (x0.shape[0],), generator=g).to(dtype) * 2 - 1
                x0 = x0 * sign[:, None, None]
            loss = dsm_loss(model, x0, sde, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * x0.shape[0], count + x0.shape[0]
        curve.append(total / count)
        if validation is not None:
            val_curve.append(evaluate_loss(model, validation, sde, seed=seed + 1))
            model.train()
        if log and (epoch + 1) % max(1, epochs // 10) == 0:
            log(f"epoch {epoch + 1}/{epochs}: loss {curve[-1]:.4f}")
    model.eval()
    return {"loss": curve, "validation": val_curve, "seconds": time.perf_counter() - t0}


def evaluate_loss(model, data: torch.Tensor, sde: VESDE, *, seed: int = 1, repeats: int = 4) -> float:
    """Mean DSM loss over ``data`` with ``repeats`` draws of (t, z) per sample (fixed seed)."""
    dtype, device = _model_dtype(model)
    data = data.to(dtype=dtype, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return float(sum(dsm_loss(model, data, sde, g) for _ in range(repeats)) / repeats)


# --- sampling --------------------------------------------------------------------------------
def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")


def em_sample(model, sde: VESDE, n: int, shape: tuple[int, ...], *, steps: int = 500,
              normal: Callable | None = None, generator=None) -> torch.Tensor:
    """Euler-Maruyama for the reverse SDE (Eq. 3.9 of [DMSQ]) from T to ``sde.eps`` in ``steps`` steps;
    the last step adds no noise. ``normal(shape)`` supplies the noise (default torch.randn)."""
    _check_steps(steps)
    dtype, device = _model_dtype(model)
    normal = normal or _torch_normal(generator, dtype, device)
    ts = torch.linspace(sde.T, sde.eps, steps + 1, dtype=torch.float64)
    x = normal((n,) + tuple(shape)).to(dtype) * sde.prior_std()
    with torch.no_grad():
        for i in range(steps):
            t, dt = float(ts[i]), float(ts[i] - ts[i + 1])
            g2 = float(sde.g2(t))
            tt = torch.full((n,), t, dtype=dtype, device=device)
            mean = x + g2 * model(x, tt) * dt
            x = mean if i == steps - 1 else mean + math.sqrt(g2 * dt) * normal(x.shape).to(dtype)
    return x


def exact_divergence_bytes(model, n: int, V: int) -> int:
    """Memory of one exact-divergence evaluation for ``n`` configurations of V sites: V batched
    vector-Jacobian products, each holding the network's activations (float32/64 per site)."""
    dtype, _ = _model_dtype(model)
    item = torch.empty((), dtype=dtype).element_size()
    return int(n) * V * V * int(getattr(model, "activation_floats_per_site", 64)) * item


def _drift_and_div(model, sde, x, t, div, probes, max_bytes):
    """f(x, t) and its divergence: None, per-probe Hutchinson (P, n), or exact (1, n)."""
    n = x.shape[0]
    tt = torch.full((n,), t, dtype=x.dtype, device=x.device)
    g2 = float(sde.g2(t))
    if div is None:
        with torch.no_grad():
            return -0.5 * g2 * model(x, tt), None
    # vector-Jacobian products by replication: K copies of the batch in one forward pass, each
    # copy's backward seeded with its own direction (plain batched kernels; vmap over the
    # backward pass measured several times slower for small networks on CPU)
    def vjps(cot):
        K = cot.shape[0]
        with torch.enable_grad():
            xr = x.detach().unsqueeze(0).expand((K,) + tuple(x.shape)).reshape((K * n,) + tuple(x.shape[1:]))
            xr = xr.clone().requires_grad_(True)
            fr = -0.5 * g2 * model(xr, tt.repeat(K))
            (grad,) = torch.autograd.grad(fr, xr, grad_outputs=cot.reshape(xr.shape))
        return fr[:n].detach(), grad.reshape(cot.shape)

    if div == "hutchinson":
        f, vjp = vjps(probes)
        d = (vjp * probes).flatten(2).sum(2)
    else:
        V = x[0].numel()
        per = exact_divergence_bytes(model, 1, V) // V  # one direction, one configuration
        chunk = max(1, min(V, max_bytes // max(per * n, 1)))
        d = torch.zeros(n, dtype=x.dtype, device=x.device)
        eye = torch.eye(V, dtype=x.dtype, device=x.device)
        for a in range(0, V, chunk):
            b = min(V, a + chunk)
            cot = eye[a:b].reshape((b - a, 1) + tuple(x.shape[1:])).expand((b - a,) + tuple(x.shape))
            f, vjp = vjps(cot)
            d = d + torch.einsum("kni,ki->n", vjp.flatten(2), eye[a:b])
        d = d[None]
    return f.detach(), d.detach()


# Dormand-Prince 5(4) tableau
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def flow(model, sde: VESDE, x: torch.Tensor, t0: float, t1: float, *, method: str = "rk4", steps: int = 100,
         divergence: str | None = None, probes: torch.Tensor | None = None, rtol: float = 1e-5,
         atol: float = 1e-5, max_bytes: int = 2 ** 31) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Integrate the probability-flow ODE from t0 to t1 (either direction).

    Returns (x(t1), integral of div f from t0 to t1 per probe (P, n) float64 or None,
    function evaluations). ``divergence``: None, ``"hutchinson"`` (``probes`` (P, n, L, L), fixed
    along the path) or ``"exact"``. ``method``: ``"rk4"`` with ``steps`` equal steps (each
    configuration its own map) or ``"rk45"`` (adaptive Dormand-Prince, one step size shared by
    the batch, error norm over the field and the log-density as in scipy's ``solve_ivp``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
    _check_steps(steps)

    def F(y, t):
        return _drift_and_div(model, sde, y, t, divergence, probes, max_bytes)

    ell = None
    nfe = 0
    if method == "rk4":
        h = (t1 - t0) / steps
        t = t0
        for _ in range(steps):
            k1, d1 = F(x, t)
            k2, d2 = F(x + 0.5 * h * k1, t + 0.5 * h)
            k3, d3 = F(x + 0.5 * h * k2, t + 0.5 * h)
            k4, d4 = F(x + h * k3, t + h)
            nfe += 4
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
            if d1 is not None:
                inc = (h / 6.0) * (d1 + 2 * d2 + 2 * d3 + d4).to(torch.float64)
                ell = inc if ell is None else ell + inc
            t = t0 + (_ + 1) * h
        return x, ell, nfe
    # adaptive Dormand-Prince with first-same-as-last
    t, h = t0, 0.01 * (t1 - t0)
    k, d = F(x, t)
    nfe += 1
    ell = None if d is None else torch.zeros_like(d, dtype=torch.float64)
    direction = 1.0 if t1 > t0 else -1.0
    while direction * (t1 - t) > 1e-12:
        if direction * (t + h - t1) > 0:
            h = t1 - t
        ks, ds = [k], [d]
        for i in range(1, 7):
            xi = x + h * sum(a * kk for a, kk in zip(_DP_A[i], ks) if a != 0.0)
            ki, di = F(xi, t + _DP_C[i] * h)
            ks.append(ki), ds.append(di)
        nfe += 6
        x_new = xi  # the 7th stage point is the 5th-order solution
        err_x = h * sum(e * kk for e, kk in zip(_DP_E, ks) if e != 0.0)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        sq = ((err_x / scale) ** 2).sum()
        count = x.numel()
        if d is not None:
            inc = h * sum(a * dd.to(torch.float64) for a, dd in zip(_DP_A[6], ds[:6]) if a != 0.0)
            err_l = h * sum(e * dd.to(torch.float64) for e, dd in zip(_DP_E, ds) if e != 0.0)
            scale_l = atol + rtol * torch.maximum(ell.abs(), (ell + inc).abs())
            sq = sq + ((err_l / scale_l) ** 2).sum().to(sq.dtype)
            count += err_l.numel()
        err = float(torch.sqrt(sq / count))
        if err <= 1.0:
            t, x, k, d = t + h, x_new, ks[6], ds[6]
            if ell is not None:
                ell = ell + inc
        h = h * min(10.0, max(0.2, 0.9 * (err if err > 0 else 1e-10) ** -0.2))
    return x, ell, nfe


def _probes(normal, kind: str, P: int, shape) -> torch.Tensor:
    if kind not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got probe={kind!r}")
    z = normal((P,) + tuple(shape))
    return torch.sign(z) + (z == 0) if kind == "rademacher" else z


def _check_divergence(divergence, probes):
    if divergence not in (None, "hutchinson", "exact"):
        raise ValueError(f"divergence must be 'hutchinson' or 'exact', got divergence={divergence!r}")
    if divergence == "hutchinson" and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 1):
        raise ValueError(f"probes must be a positive integer, got probes={probes!r}")


def _refuse_exact(model, n, V, max_bytes):
    need = exact_divergence_bytes(model, 1, V)
    if need > max_bytes:
        raise ValueError(f"the exact divergence on V={V} sites needs about {need / 2 ** 30:.1f} GiB per "
                         f"configuration (V vector-Jacobian products), more than max_bytes="
                         f"{max_bytes / 2 ** 30:.1f} GiB; use Hutchinson probes (--probes P) or a smaller lattice")


def ode_sample(model, sde: VESDE, n: int, shape, *, method="rk4", steps=100, divergence="hutchinson", probes=1,
               probe="rademacher", normal: Callable | None = None, generator=None, rtol=1e-5, atol=1e-5,
               max_bytes: int = 2 ** 31):
    """Draw by the probability-flow ODE from T to eps; returns (x, log q per probe (P, n) or None, nfe).

    log q(x_eps) = log p_T(x_T) - integral_T^eps div f dt, from the same integration that drew x, so
    it is the density of what was drawn up to the integrator's error."""
    _check_divergence(divergence, probes)
    dtype, device = _model_dtype(model)
    normal = normal or _torch_normal(generator, dtype, device)
    if divergence == "exact":
        _refuse_exact(model, n, math.prod(shape), max_bytes)
    xT = normal((n,) + tuple(shape)).to(dtype) * sde.prior_std()
    eps = _probes(normal, probe, probes, (n,) + tuple(shape)).to(dtype) if divergence == "hutchinson" else None
    x, ell, nfe = flow(model, sde, xT, sde.T, sde.eps, method=method, steps=steps, divergence=divergence,
                       probes=eps, rtol=rtol, atol=atol, max_bytes=max_bytes)
    log_q = None if ell is None else sde.prior_log_prob(xT)[None] - ell
    return x, log_q, nfe


def log_likelihood(model, sde: VESDE, x: torch.Tensor, *, method="rk4", steps=100, divergence="hutchinson",
                   probes=1, probe="rademacher", normal: Callable | None = None, generator=None, rtol=1e-5,
                   atol=1e-5, max_bytes: int = 2 ** 31):
    """log q(x) by the probability-flow ODE from eps to T (Eq. 3.15 of [DMSQ]); per probe (P, n), and nfe."""
    _check_divergence(divergence, probes)
    if divergence is None:
        raise ValueError("log_likelihood needs divergence='hutchinson' or 'exact'")
    dtype, device = _model_dtype(model)
    normal = normal or _torch_normal(generator, dtype, device)
    x = x.to(dtype=dtype, device=device)
    if divergence == "exact":
        _refuse_exact(model, x.shape[0], x[0].numel(), max_bytes)
    eps = _probes(normal, probe, probes, tuple(x.shape)).to(dtype) if divergence == "hutchinson" else None
    xT, ell, nfe = flow(model, sde, x, sde.eps, sde.T, method=method, steps=steps, divergence=divergence,
                        probes=eps, rtol=rtol, atol=atol, max_bytes=max_bytes)
    return sde.prior_log_prob(xT)[None] + ell, nfe


def _mean_and_var(per_probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over probes and the variance of that mean (sample variance / P; 0 for P = 1 or exact)."""
    P = per_probe.shape[0]
    mean = per_probe.mean(0)
    var = per_probe.var(0, unbiased=True) / P if P > 1 else torch.zeros_like(mean)
    return mean, var


class DiffusionProposal:
    """A trained score model as an independence proposal ``(rng, like) -> (config, log_q)``.

    Random numbers come from the chain's generator (``rng.normal``) on the field's backend, so
    a chain is reproducible from its seed on every backend; results are returned in the field's
    namespace, dtype and device.

    Parameters
    ----------
    model : torch score model (``model(phi, t)``)
    sde : VESDE
    route : {"paper", "ode", "penalty", "exact"}
        The DM-MC routes: 1. ``paper`` - Euler-Maruyama samples, log q from the
        ODE with Hutchinson probes at the sample; 2. ``ode`` - ODE samples, log q from the same
        integration with probes; 3. ``penalty`` - as 2, also returning the variance of log q
        (spread of the P per-probe integrals / P) and re-estimating the current state's log q
        with fresh probes (:meth:`log_density`) for the Ceperley-Dewing penalty; 4. ``exact`` -
        ODE samples with the exact divergence.
    steps : int
        RK4 steps of the ODE (sampling and likelihood).
    em_steps : int
        Euler-Maruyama steps (route ``paper``).
    probes : int
        Hutchinson probes P (routes 1-3; route 3 needs P >= 2 for a variance).
    probe : {"rademacher", "gaussian"}
        Rademacher (default) estimates the trace of a near-diagonal Jacobian, as early in the
        reverse process, with far less noise than the paper's Gaussian probes.
    method : {"rk4", "rk45"}
        ODE solver. RK4 (default) maps each configuration alone; RK45 shares its step size
        over the batch, so a configuration's map depends weakly on the others.
    """

    def __init__(self, model, sde: VESDE, route: str = "exact", *, steps: int = 50, em_steps: int = 500,
                 probes: int = 4, probe: str = "rademacher", method: str = "rk4", rtol: float = 1e-5,
                 atol: float = 1e-5, max_bytes: int = 2 ** 31):
        if route not in ROUTES:
            raise ValueError(f"route must be one of {sorted(ROUTES)}, got route={route!r}")
        _check_steps(steps)
        _check_steps(em_steps)
        sampler, divergence = ROUTES[route]
        _check_divergence(divergence, probes)
        if route == "penalty" and probes < 2:
            raise ValueError(f"the penalty route needs probes >= 2 to estimate the variance of log q, "
                             f"got probes={probes!r}")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got probe={probe!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
        self.model, self.sde, self.route = model, sde, route
        self.sampler, self.divergence = sampler, divergence
        self.steps, self.em_steps, self.probes, self.probe, self.method = steps, em_steps, probes, probe, method
        self.tol = {"rtol": rtol, "atol": atol, "max_bytes": max_bytes}
        self.dtype, self.device = _model_dtype(model)
        self.returns_variance = route == "penalty"
        self.nfe = 0

    def _normal(self, rng, like):
        return lambda shape: to_torch(rng.normal(tuple(shape), like.dtype), self.device, self.dtype)

    def __call__(self, rng, like):
        normal = self._normal(rng, like)
        n, shape = like.shape[0], tuple(like.shape[1:])
        if self.sampler == "em":
            x = em_sample(self.model, self.sde, n, shape, steps=self.em_steps, normal=normal)
            per_probe, nfe = log_likelihood(self.model, self.sde, x, steps=self.steps, divergence=self.divergence,
                                            probes=self.probes, probe=self.probe, normal=normal,
                                            method=self.method, **self.tol)
            self.nfe += nfe + self.em_steps
        else:
            x, per_probe, nfe = ode_sample(self.model, self.sde, n, shape, method=self.method, steps=self.steps,
                                           divergence=self.divergence, probes=self.probes, probe=self.probe,
                                           normal=normal, **self.tol)
            self.nfe += nfe
        log_q, var = _mean_and_var(per_probe)
        out = (from_torch(x, like), from_torch(log_q, like))
        return out + (from_torch(var, like),) if self.returns_variance else out

    def log_density(self, rng, x):
        """(log q, its variance) at configurations ``x`` with fresh probes (route 3's current state)."""
        per_probe, nfe = log_likelihood(self.model, self.sde, to_torch(x, self.device, self.dtype),
                                        steps=self.steps, divergence=self.divergence, probes=self.probes,
                                        probe=self.probe, normal=self._normal(rng, x), method=self.method,
                                        **self.tol)
        self.nfe += nfe
        log_q, var = _mean_and_var(per_probe)
        return from_torch(log_q, x), from_torch(var, x)


def r_squared(action: torch.Tensor, s_eff: torch.Tensor, *, resamples: int = 200, seed: int = 0) -> dict:
    """How well S_eff = -log q tracks the action S (Eq. 4.9 of [DMSQ]), with bootstrap errors.

    ``eq_4_9``: 1 - sum (S - S_eff - c)^2 / sum (S - mean S)^2 with c = mean(S - S_eff), the
    normalisation log Z that -log q leaves out (without it Eq. 4.9 compares numbers offset by an
    unknown constant); ``pearson2``: the squared Pearson correlation (what the public code reports),
    which also lets the slope float. Each as {"value", "error"}.
    """
    S, E = action.to(torch.float64).flatten(), s_eff.to(torch.float64).flatten()

    def both(a, b):
        d = a - b
        r2 = 1.0 - ((d - d.mean()) ** 2).sum() / ((a - a.mean()) ** 2).sum()
        rho = torch.corrcoef(torch.stack([a, b]))[0, 1]
        return float(r2), float(rho * rho)

    value = both(S, E)
    g = torch.Generator().manual_seed(seed)
    boot = [both(S[i], E[i]) for i in (torch.randint(0, S.numel(), (S.numel(),), generator=g)
                                       for _ in range(resamples))]
    err = [float(torch.tensor([b[k] for b in boot]).std()) for k in range(2)]
    return {"eq_4_9": {"value": value[0], "error": err[0]}, "pearson2": {"value": value[1], "error": err[1]}}


# --- jobs behind the command line (torch stays here; the CLI imports this module lazily) ---------
def train_network(network: str, L: int, configs: Any, sde: VESDE, *, epochs: int, batch: int = 64,
                  lr: float = 1e-3, seed: int = 0, flips: bool = True, device: Any = "cpu",
                  log: Callable[[str], None] | None = None):
    """A fresh ``network`` ("lattice" or "paper") trained on host configurations (n, L, L); returns
    (model on the CPU, training record)."""
    from .unet import build_network
    data = torch.as_tensor(configs, dtype=torch.float32)
    extra = {"sigma_data": float(data.std())} if network == "lattice" else {}
    torch.manual_seed(seed)
    net = build_network(network, L, sde.sigma, **extra).to(device)
    curve = train_score(net, data.to(device), sde, epochs=epochs, batch=batch, lr=lr, seed=seed, flips=flips, log=log)
    return net.cpu(), dict(curve, parameters=sum(p.numel() for p in net.parameters()))


def draw(model, sde: VESDE, n: int, L: int, *, sampler: str = "em", steps: int = 500, seed: int = 0):
    """``n`` configurations by Euler-Maruyama or the probability-flow ODE (RK4), seeded; host float64."""
    dtype, device = _model_dtype(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def normal(shape):
        return torch.randn(shape, generator=gen, dtype=dtype).to(device)
    if sampler == "em":
        x = em_sample(model, sde, n, (L, L), steps=steps, normal=normal)
    elif sampler == "ode":
        x, _, _ = ode_sample(model, sde, n, (L, L), steps=steps, divergence=None, normal=normal)
    else:
        raise ValueError(f"sampler must be 'em' or 'ode', got sampler={sampler!r}")
    return x.detach().cpu().double().numpy()


def likelihood_against_action(model, sde: VESDE, configs: Any, action: Any, *, steps: int = 50,
                              divergence: str = "hutchinson", probes: int = 4, probe: str = "rademacher",
                              seed: int = 0) -> dict:
    """log q of host configurations and how well -log q tracks the action: {"r2", "nfe",
    "log_q_probe_var"} (the mean variance of log q over probes)."""
    dtype, device = _model_dtype(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def normal(shape):
        return torch.randn(shape, generator=gen, dtype=dtype).to(device)
    x = torch.as_tensor(configs, dtype=dtype).to(device)
    per, nfe = log_likelihood(model, sde, x, steps=steps, divergence=divergence, probes=probes, probe=probe,
                              normal=normal)
    log_q, var = _mean_and_var(per)
    return {"r2": r_squared(torch.as_tensor(action, dtype=torch.float64), -log_q.cpu()), "nfe": nfe,
            "log_q_probe_var": float(var.mean())}


# --- model files ------------------------------------------------------------------------------
def save_score_model(path, model, metadata: dict) -> None:
    """Architecture, weights and metadata (action parameters, L, training curve) in one file."""
    torch.save({"format": _FORMAT, "architecture": model.architecture(), "state_dict": model.state_dict(),
                "metadata": dict(metadata)}, path)


def load_score_model(path, *, network: str | None = None, expect: dict | None = None):
    """(model, metadata). A file of another architecture than ``network`` is an error; ``expect``
    (e.g. {"L": 8, "kappa": 0.21, "lam": 0.022}) differing from the stored metadata warns."""
    from .files import load_blob
    blob = load_blob(path, "diffusion score-model", "format", _FORMAT)
    arch = dict(blob["architecture"])
    name = arch.pop("name")
    if network is not None and name != network:
        raise ValueError(f"{path!s} holds a {name!r} network, not --network {network!r}")
    if name == "gaussian":
        model = GaussianScore(blob["state_dict"]["spectrum"], arch["sigma"])
    elif name in ARCHITECTURES:
        model = ARCHITECTURES[name](arch["L"], arch["sigma"], channels=tuple(arch["channels"]), embed=arch["embed"])
    else:
        raise ValueError(f"unknown architecture {name!r} in {path!s}")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"the weights in {path!s} do not fit the architecture {blob['architecture']}: "
                         f"{str(e).splitlines()[0]}") from e
    meta = blob["metadata"]
    warn_if_trained_otherwise(meta, expect, f"the diffusion model in {path!s}")
    return model.eval(), meta

