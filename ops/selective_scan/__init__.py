"""``zoo.ops.selective_scan``: the all-states selective scan of A2Mamba's A2SSM (replaces the custom
CUDA extension ``selective_scan_cuda_oflex_rh``).

    selective_scan_states(u, delta, A, B, delta_bias=None, delta_softplus=True) -> h [B, D, N, L] (fp32)

See :mod:`.reference` for the exact definition. On CUDA with Triton the fused kernels run (forward and
backward, one program per (batch, channel block)); elsewhere the chunked reference runs.
"""
from typing import Optional

import torch

from .._dispatch import use_triton
from .reference import selective_scan_loop, selective_scan_states_reference

__all__ = ['selective_scan_states', 'selective_scan_states_reference', 'selective_scan_loop']


def selective_scan_states(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          delta_bias: Optional[torch.Tensor] = None, delta_softplus: bool = True) -> torch.Tensor:
    """Every hidden state h_t of h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, dt = softplus(delta + bias)."""
    if use_triton(u, delta, A, B, delta_bias):
        from .triton_ops import selective_scan_states_triton
        return selective_scan_states_triton(u, delta, A, B, delta_bias, delta_softplus)
    return selective_scan_states_reference(u, delta, A, B, delta_bias, delta_softplus)
