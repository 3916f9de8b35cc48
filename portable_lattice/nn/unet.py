r"""Score networks s(phi, t) ~ grad log p_t(phi) for the variance-exploding diffusion of [DMSQ].

Three models, one interface: ``model(phi, t) -> score`` with ``phi`` of shape
(batch, L, L) and ``t`` of shape (batch,); each holds the SDE's ``sigma`` so it
knows std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma)).

* :class:`PaperUNet` - the network of App. A of [DMSQ] as its public code builds it:
  Gaussian Fourier embedding of t (width 256), convolutions 32-64-128-256 and back
  with concatenation skips, GroupNorm, swish, output divided by std(t). Every
  stride is 1 (it never down- or up-samples), padding is with zeros (not periodic)
  and nothing imposes the Z2 symmetry; about 1.1 M parameters.
* :class:`LatticeUNet` - a lattice-native network: circular padding, down/up-sampling
  by factors of 2 so its receptive field covers the lattice, and odd in phi by
  construction (s(-phi, t) = -s(phi, t)): bias-free convolutions, odd activations,
  time conditioning by multiplication only, and the preconditioning of Karras et al.
  (EDM), whose skip term makes the untrained network the exact score of white noise
  of variance ``sigma_data^2``. It is equivariant under translations by multiples
  of 2^levels (the strided down-sampling picks a sub-lattice).
* :class:`GaussianScore` - the exact score of a Gaussian N(0, C) with translation-
  invariant C (e.g. the free field's propagator): -(C + std(t)^2)^(-1) phi by FFT.
  No training; it makes samplers and likelihoods testable against closed forms, and
  a deliberately wrong C gives a wrong-but-known proposal for exactness checks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PaperUNet", "LatticeUNet", "GaussianScore", "free_field_spectrum", "ve_std", "build_network",
           "ARCHITECTURES"]


def ve_std(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """std(t) of the VE SDE: sqrt((sigma^(2t) - 1) / (2 ln sigma)) (Eq. 3.6 of [DMSQ])."""
    return torch.sqrt((sigma ** (2.0 * t) - 1.0) / (2.0 * math.log(sigma)))


def _per_sample(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


class _FourierTime(nn.Module):
    """Gaussian random Fourier features of a scalar (fixed, not trained)."""

    def __init__(self, width: int, scale: float):
        super().__init__()
        self.register_buffer("w", torch.randn(width // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2.0 * math.pi * t[:, None] * self.w[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class PaperUNet(nn.Module):
    """The score network of App. A of [DMSQ], as published (stride 1, zero padding, no symmetry).

    Parameters
    ----------
    L : int
        Lattice size (recorded for model files; the network itself is fully convolutional).
    sigma : float
        The SDE's sigma (output divided by std(t)).
    channels : tuple of 4 ints
        Widths of the four levels (32, 64, 128, 256 in the paper).
    embed : int
        Width of the time embedding (256).
    """

    def __init__(self, L: int, sigma: float = 25.0, channels=(32, 64, 128, 256), embed: int = 256):
        super().__init__()
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.L, self.sigma, self.channels, self.embed_width = int(L), float(sigma), (c1, c2, c3, c4), int(embed)
        self.embed = nn.Sequential(_FourierTime(embed, 30.0), nn.Linear(embed, embed))

        def conv(ci, co, bias=False):
            return nn.Conv2d(ci, co, 3, stride=1, padding=1, bias=bias)

        def gn(c):
            return nn.GroupNorm(math.gcd(4 if c == c1 else 32, c), c)

        self.down = nn.ModuleList([conv(1, c1), conv(c1, c2), conv(c2, c3), conv(c3, c4)])
        self.down_t = nn.ModuleList([nn.Linear(embed, c) for c in (c1, c2, c3, c4)])
        self.down_n = nn.ModuleList([gn(c) for c in (c1, c2, c3, c4)])
        self.up = nn.ModuleList([conv(c4, c3), conv(2 * c3, c2), conv(2 * c2, c1)])
        self.up_t = nn.ModuleList([nn.Linear(embed, c) for c in (c3, c2, c1)])
        self.up_n = nn.ModuleList([gn(c) for c in (c3, c2, c1)])
        self.out = conv(2 * c1, 1, bias=True)

    # activations held per site by one forward pass (for the exact-divergence memory estimate)
    @property
    def activation_floats_per_site(self) -> int:
        return 4 * (2 * sum(self.channels) + 2 * sum(self.channels[:3]))

    def architecture(self) -> dict:
        return {"name": "paper", "L": self.L, "sigma": self.sigma, "channels": list(self.channels),
                "embed": self.embed_width}

    def forward(self, phi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _per_sample(t, phi)
        emb = F.silu(self.embed(t))
        h = phi.unsqueeze(1)
        skips = []
        for conv, dense, norm in zip(self.down, self.down_t, self.down_n):
            h = F.silu(norm(conv(h) + dense(emb)[:, :, None, None]))
            skips.append(h)
        skips.pop()
        for conv, dense, norm in zip(self.up, self.up_t, self.up_n):
            h = F.silu(norm(conv(h) + dense(emb)[:, :, None, None]))
            h = torch.cat([h, skips.pop()], dim=1)
        return self.out(h).squeeze(1) / ve_std(t, self.sigma)[:, None, None]


def _odd_act(h: torch.Tensor) -> torch.Tensor:
    # x sigmoid(|x|): odd, smooth, slope 1/2 at 0 and 1 far out (an odd cousin of swish)
    return h * torch.sigmoid(h.abs())


def _cconv(ci: int, co: int) -> nn.Conv2d:
    return nn.Conv2d(ci, co, 3, padding=1, padding_mode="circular", bias=False)


class _OddBlock(nn.Module):
    """Residual block act -> conv -> scale(t) -> act -> conv, with no additive constant anywhere."""

    def __init__(self, c: int, embed: int):
        super().__init__()
        self.conv1, self.conv2 = _cconv(c, c), _cconv(c, c)
        self.scale = nn.Linear(embed, c)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity

    def forward(self, h, emb):
        u = self.conv1(_odd_act(h)) * (1.0 + self.scale(emb))[:, :, None, None]
        return h + self.conv2(_odd_act(u))


class LatticeUNet(nn.Module):
    """Lattice-native score network: periodic, Z2-odd, multi-scale (see the module docstring).

    Parameters
    ----------
    L : int
        Lattice size; must be divisible by 2^levels.
    sigma : float
        The SDE's sigma.
    channels : tuple of ints
        Width per level, finest first; ``len(channels) - 1`` down-samplings by 2.
    embed : int
        Width of the noise-level embedding.
    sigma_data : float
        Per-site standard deviation of the data (EDM preconditioning); set from the training set.
    """

    def __init__(self, L: int, sigma: float = 25.0, channels=(16, 32, 64), embed: int = 32,
                 sigma_data: float = 1.0):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        levels = len(channels) - 1
        if L % (2 ** levels):
            raise ValueError(f"L must be divisible by 2^{levels} for {len(channels)} levels, got L={L}")
        self.L, self.sigma, self.channels, self.embed_width = int(L), float(sigma), channels, int(embed)
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))
        self.time = nn.Sequential(_FourierTime(embed, 1.0), nn.Linear(embed, embed), nn.SiLU(),
                                  nn.Linear(embed, embed))
        self.inp = _cconv(1, channels[0])
        self.enc = nn.ModuleList([_OddBlock(c, embed) for c in channels])
        self.down = nn.ModuleList([nn.Conv2d(a, b, 2, stride=2, bias=False) for a, b in zip(channels, channels[1:])])
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2, bias=False)
                                 for a, b in zip(channels, channels[1:])])
        self.merge = nn.ModuleList([_cconv(2 * a, a) for a in channels[:-1]])
        self.dec = nn.ModuleList([_OddBlock(a, embed) for a in channels[:-1]])
        self.out = _cconv(channels[0], 1)
        nn.init.zeros_(self.out.weight)  # untrained: the exact white-noise score

    @property
    def activation_floats_per_site(self) -> int:
        return 4 * sum(c // 4 ** i for i, c in enumerate(self.channels)) * 3

    def architecture(self) -> dict:
        return {"name": "lattice", "L": self.L, "sigma": self.sigma, "channels": list(self.channels),
                "embed": self.embed_width}

    def forward(self, phi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _per_sample(t, phi)
        std = ve_std(t, self.sigma)[:, None, None]
        sd2 = self.sigma_data ** 2
        emb = self.time(torch.log(std.flatten()) / 4.0)
        # EDM: D = c_skip phi + c_out F(c_in phi), score = (D - phi) / std^2; every term is linear in
        # phi at fixed t, so F odd makes the score odd
        c_in = 1.0 / torch.sqrt(sd2 + std ** 2)
        h = self.inp((c_in * phi).unsqueeze(1))
        skips = []
        for i, block in enumerate(self.enc):
            h = block(h, emb)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        for i in reversed(range(len(self.down))):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], dim=1))
            h = self.dec[i](h, emb)
        f = self.out(_odd_act(h)).squeeze(1)
        return -phi / (sd2 + std ** 2) + self.sigma_data * f / (std * torch.sqrt(sd2 + std ** 2))


def free_field_spectrum(L: int, kappa: float, dim: int = 2) -> torch.Tensor:
    """Eigenvalues c(k) = 1 / (2 - 4 kappa sum_mu cos k_mu) of the free-field propagator (lam = 0
    in Eq. 4.2 of [DMSQ]), on the FFT grid, float64, shape (L,) * dim."""
    k = 2.0 * math.pi * torch.arange(L, dtype=torch.float64) / L
    grids = torch.meshgrid(*([k] * dim), indexing="ij")
    a = 2.0 - 4.0 * kappa * sum(torch.cos(g) for g in grids)
    if bool((a <= 0).any()):
        raise ValueError(f"the free field is unstable at kappa={kappa!r} in d={dim} (need kappa < {0.5 / dim:g})")
    return 1.0 / a


class GaussianScore(nn.Module):
    """Exact score of N(0, C) under the VE SDE: -(C + std(t)^2)^(-1) phi, C diagonal in Fourier space.

    Parameters
    ----------
    spectrum : tensor (L, L)
        Eigenvalues of C on the FFT grid (:func:`free_field_spectrum`).
    sigma : float
        The SDE's sigma.
    """

    def __init__(self, spectrum: torch.Tensor, sigma: float = 25.0):
        super().__init__()
        self.register_buffer("spectrum", torch.as_tensor(spectrum, dtype=torch.float64))
        self.L, self.sigma = int(self.spectrum.shape[0]), float(sigma)
        # parameters() must not be empty: the samplers read the dtype and device off it
        self.dtype_anchor = nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False)

    activation_floats_per_site = 8

    def architecture(self) -> dict:
        return {"name": "gaussian", "L": self.L, "sigma": self.sigma}

    def forward(self, phi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _per_sample(t, phi)
        var = self.spectrum.to(phi.dtype)[None] + ve_std(t, self.sigma)[:, None, None] ** 2
        return -torch.fft.ifft2(torch.fft.fft2(phi) / var).real


ARCHITECTURES = {"paper": PaperUNet, "lattice": LatticeUNet}


def build_network(name: str, L: int, sigma: float = 25.0, **kw) -> nn.Module:
    """A fresh score network by name (``"paper"`` or ``"lattice"``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"network must be one of {sorted(ARCHITECTURES)}, got network={name!r}")
    return ARCHITECTURES[name](L, sigma, **kw)
