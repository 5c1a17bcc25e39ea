"""Tiny deterministic eps-models for sampler tests (no weights, no downloads)."""

import torch


class TinyEpsModel(torch.nn.Module):
    """A nonlinear eps-prediction model: eps = tanh(conv(x) + embed(t)) * scale + x * mix.

    Nonlinear in x and t so that any error in the timestep or the scaling shows up.
    """

    def __init__(self, channels=4, dtype=torch.float64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(channels, channels, generator=g, dtype=dtype) * 0.5)
        self.freq = torch.nn.Parameter(torch.randn(channels, generator=g, dtype=dtype) * 0.01)
        self.calls = 0

    def forward(self, x, t, **kwargs):
        self.calls += 1
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        emb = torch.sin(t[:, None] * self.freq[None, :].to(x.dtype))[:, :, None, None]
        h = torch.einsum("oc,bchw->bohw", self.w.to(x.dtype), x)
        return torch.tanh(h + emb) * 0.9 + 0.1 * x
