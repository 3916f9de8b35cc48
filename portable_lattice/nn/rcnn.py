"""The residual CNN gradient surrogate of [PEM] (App. B, Fig. 6).

conv -> BatchNorm -> ReLU -> residual block (conv -> BatchNorm -> ReLU, plus a
1x1 projection of its input on the skip path) -> final conv, with circular
(periodic) padding throughout. It maps a field (batch, 1, L, ..., L) to
dS/dphi_x at every site (same shape). Fully convolutional, so translation
equivariant and usable on any L.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["ResidualCNN", "FrozenResidualCNN"]


def _conv(dim: int, c_in: int, c_out: int, k: int) -> nn.Module:
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
    return cls(c_in, c_out, k, padding=k // 2, padding_mode="circular")


def _bn(dim: int, c: int) -> nn.Module:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dim](c)


class ResidualCNN(nn.Module):
    """Residual CNN predicting the action gradient at every site.

    Parameters
    ----------
    channels : int
        Hidden channels.
    kernel_size : int
        Odd kernel size of the three main-path convolutions.
    dim : int
        Lattice dimension (1, 2 or 3).
    """

    def __init__(self, channels: int = 16, kernel_size: int = 3, dim: int = 2):
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got kernel_size={kernel_size}")
        self.dim, self.channels, self.kernel_size = dim, channels, kernel_size
        self.inp = nn.Sequential(_conv(dim, 1, channels, kernel_size), _bn(dim, channels), nn.ReLU())
        self.block = nn.Sequential(_conv(dim, channels, channels, kernel_size), _bn(dim, channels), nn.ReLU())
        self.project = _conv(dim, channels, channels, 1)
        self.out = _conv(dim, channels, 1, kernel_size)

    @property
    def receptive_field(self) -> int:
        """Chebyshev radius r: the output at x depends on the input within distance r.

        Summed over the longest path, the three k x k convolutions: 3 (k - 1) / 2
        (the 1x1 projection adds nothing).
        """
        r = 0
        for m in (self.inp[0], self.block[0], self.out):
            r += (m.kernel_size[0] - 1) // 2
        return r

    def architecture(self) -> dict:
        return {"name": "ResidualCNN", "channels": self.channels, "kernel_size": self.kernel_size, "dim": self.dim}

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        h = self.inp(phi)
        h = self.block(h) + self.project(h)
        return self.out(h)


def _folded(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode BatchNorm is affine)."""
    fused = fuse_conv_bn_eval(conv, bn)
    return fused.weight.detach(), fused.bias.detach()


def _crop(h: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    if r == 0:
        return h
    return h[(Ellipsis,) + (slice(r, -r),) * dim]


class FrozenResidualCNN(nn.Module):
    """Inference form of one or N stacked :class:`ResidualCNN` members (eval mode only).

    Same function as the members in eval mode, computed faster:

    * BatchNorm is folded into the preceding convolution (it is affine in eval mode);
    * the field is padded circularly once, by the receptive field r, and every
      convolution is then unpadded ("valid"): on a periodic lattice this equals
      circular padding at every layer, without a padded copy per layer;
    * N members are evaluated in one pass: the first convolution is one dense
      convolution 1 -> N*C (all members read the same field), the others are
      grouped convolutions, one group per member.

    Input (batch, 1, L..) -> output (batch, N, L..).
    """

    def __init__(self, members: list):
        super().__init__()
        first = members[0]
        self.n_members, self.dim, self._receptive_field = len(members), first.dim, first.receptive_field
        self._conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.dim]
        self._r_block = (first.block[0].kernel_size[0] - 1) // 2
        parts = {"w1": [], "b1": [], "w2": [], "b2": [], "wp": [], "bp": [], "w3": [], "b3": []}
        for m in members:
            if m.training:
                raise ValueError("FrozenResidualCNN needs members in eval mode (BatchNorm running statistics)")
            for key, (w, b) in (("1", _folded(m.inp[0], m.inp[1])), ("2", _folded(m.block[0], m.block[1])),
                                ("p", (m.project.weight.detach(), m.project.bias.detach())),
                                ("3", (m.out.weight.detach(), m.out.bias.detach()))):
                parts["w" + key].append(w)
                parts["b" + key].append(b)
        for name, tensors in parts.items():
            self.register_buffer(name, torch.cat(tensors).clone())
        self.eval()

    @property
    def receptive_field(self) -> int:
        return self._receptive_field

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        r, n = self._receptive_field, self.n_members
        if min(phi.shape[2:]) >= r:
            x = F.pad(phi, (r, r) * self.dim, mode="circular")
        else:  # lattices smaller than the receptive field: wrap by index, any number of times
            x = phi
            for axis in range(2, 2 + self.dim):
                size = x.shape[axis]
                x = x.index_select(axis, torch.arange(-r, size + r, device=x.device) % size)
        h = torch.relu(self._conv(x, self.w1, self.b1))  # L + 2 (r_block + r_out)
        g = torch.relu(self._conv(h, self.w2, self.b2, groups=n))
        g = g + self._conv(_crop(h, self._r_block, self.dim), self.wp, self.bp, groups=n)
        return self._conv(g, self.w3, self.b3, groups=n)


def _stack(members):
    return FrozenResidualCNN(list(members))


ResidualCNN.stack = staticmethod(_stack)
