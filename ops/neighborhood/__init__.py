"""``zoo.ops.neighborhood``: 2-D neighborhood aggregation with NATTEN 0.17 semantics.

    neighborhood_qk(q, k, kernel_size, dilation=1, rpb=None) -> attn [B, heads, H, W, kh*kw]
    neighborhood_av(attn, v, kernel_size, dilation=1)         -> out  [B, heads, H, W, D]
    neighborhood_rpb(rpb, H, W, kernel_size, dilation=1)      -> bias [heads, H, W, kh*kw]

Replaces ``natten.functional.na2d_qk`` / ``na2d_av`` of NATTEN 0.17 (removed in NATTEN 0.20) for
OverLoCK's ContMix and A2Mamba's MASS. Border windows slide inward (no padding), dilation splits each
axis into residue classes; see :mod:`.reference` for the exact rules. On CUDA with Triton the fused
kernels run (they never materialise the k*k-expanded neighbour tensors); elsewhere the reference runs.
"""
from typing import Optional

import torch

from .._dispatch import HAS_TRITON, use_triton
from .reference import (
    check_neighborhood, neighbor_tables, neighborhood_av_reference, neighborhood_qk_reference, pair)

__all__ = [
    'neighborhood_qk', 'neighborhood_av', 'neighborhood_rpb', 'neighborhood_qk_reference',
    'neighborhood_av_reference', 'neighbor_tables',
]


def neighborhood_rpb(rpb: torch.Tensor, H: int, W: int, kernel_size, dilation=1) -> torch.Tensor:
    """The relative-position bias each pixel adds to each tap: [heads, 2kh-1, 2kw-1] -> [heads, H, W, kh*kw]."""
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    _, by = neighbor_tables(H, kh, dh, rpb.device)
    _, bx = neighbor_tables(W, kw, dw, rpb.device)
    return rpb[:, by[:, None, :, None], bx[None, :, None, :]].reshape(rpb.shape[0], H, W, kh * kw)


def neighborhood_qk(q: torch.Tensor, k: torch.Tensor, kernel_size, dilation=1,
                    rpb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q . k over each pixel's neighborhood (+ relative-position bias); no scale, no softmax."""
    if use_triton(q, k, rpb):
        from .triton_ops import neighborhood_qk_triton
        return neighborhood_qk_triton(q, k, kernel_size, dilation, rpb)
    return neighborhood_qk_reference(q, k, kernel_size, dilation, rpb)


def neighborhood_av(attn: torch.Tensor, v: torch.Tensor, kernel_size, dilation=1) -> torch.Tensor:
    """Weights . values over each pixel's neighborhood."""
    if use_triton(attn, v):
        from .triton_ops import neighborhood_av_triton
        return neighborhood_av_triton(attn, v, kernel_size, dilation)
    return neighborhood_av_reference(attn, v, kernel_size, dilation)
