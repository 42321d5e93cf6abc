"""Cosine time encoding (TGAT): phi(dt) = cos(dt * w + phase) with w_j = 1 / 10**(9 j / (d-1)).

The frequencies span periods from ~6 seconds to ~200 years, so raw gaps in seconds are encoded
without normalisation. Frequencies and phases are learnable, initialised to the fixed basis.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def basis_frequencies(dim: int) -> np.ndarray:
    """1 / 10**linspace(0, 9, dim)."""
    return 1.0 / 10 ** np.linspace(0, 9, dim)


class TimeEncoding(nn.Module):
    def __init__(self, dim: int, learnable: bool = True):
        super().__init__()
        freq = torch.tensor(basis_frequencies(dim), dtype=torch.float32)
        phase = torch.zeros(dim)
        if learnable:
            self.freq = nn.Parameter(freq)
            self.phase = nn.Parameter(phase)
        else:
            self.register_buffer("freq", freq)
            self.register_buffer("phase", phase)

    def forward(self, dt: torch.Tensor) -> torch.Tensor:
        """dt of any shape [...] (seconds) -> [..., dim]."""
        return torch.cos(dt.to(self.freq.dtype).unsqueeze(-1) * self.freq + self.phase)
