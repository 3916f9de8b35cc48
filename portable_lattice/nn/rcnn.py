"""The residual CNN gradient surrogate of the PEM paper (App. B, Fig. 6).

conv -> BatchNorm -> ReLU -> residual block (conv -> BatchNorm -> ReLU, plus a
1x1 projection of its input on the skip path) -> final conv, with circular
(periodic) padding throughout. It maps a field (batch, 1, L, ..., L) to
dS/dphi_x at every site (same shape). Fully convolutional, so translation
equivariant and usable on any L.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualCNN"]


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


class StackedResidualCNN(nn.Module):
    """N :class:`ResidualCNN` members fused into one network of grouped convolutions.

    Group i of every convolution (and channel block i of every BatchNorm)
    carries member i's weights, so one forward pass evaluates the whole
    ensemble: input (batch, 1, L..) -> output (batch, N, L..). Eval mode only
    (BatchNorm with the members' running statistics).
    """

    def __init__(self, members: list):
        super().__init__()
        first = members[0]
        n, c, k, dim = len(members), first.channels, first.kernel_size, first.dim
        self.n_members, self.dim, self._receptive_field = n, dim, first.receptive_field
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        self.inp = conv(n, n * c, k, padding=k // 2, padding_mode="circular", groups=n)
        self.bn1 = _bn(dim, n * c)
        self.block = conv(n * c, n * c, k, padding=k // 2, padding_mode="circular", groups=n)
        self.bn2 = _bn(dim, n * c)
        self.project = conv(n * c, n * c, 1, groups=n)
        self.out = conv(n * c, n, k, padding=k // 2, padding_mode="circular", groups=n)
        with torch.no_grad():
            for dst, name in ((self.inp, "inp.0"), (self.block, "block.0"), (self.project, "project"), (self.out, "out")):
                dst.weight.copy_(torch.cat([m.get_submodule(name).weight for m in members]))
                dst.bias.copy_(torch.cat([m.get_submodule(name).bias for m in members]))
            for dst, name in ((self.bn1, "inp.1"), (self.bn2, "block.1")):
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(dst, attr).copy_(torch.cat([getattr(m.get_submodule(name), attr) for m in members]))
                dst.eps = members[0].get_submodule(name).eps
        self.eval()

    @property
    def receptive_field(self) -> int:
        return self._receptive_field

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        x = phi.expand(-1, self.n_members, *phi.shape[2:])  # every member sees the same field
        h = torch.relu(self.bn1(self.inp(x)))
        h = torch.relu(self.bn2(self.block(h))) + self.project(h)
        return self.out(h)


def _stack(members):
    return StackedResidualCNN(members)


ResidualCNN.stack = staticmethod(_stack)
