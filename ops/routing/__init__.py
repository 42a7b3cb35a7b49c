"""``zoo.ops.routing``: bi-level routing attention (BiFormer).

    routing_attention(q, k, v, topk, scale) -> out          # routing + attention
    routed_attention(q, k, v, idx, scale) -> out            # attention for given routing indices
    region_topk(q, k, topk, scale) -> idx                   # the routing alone

q, k [B, heads, R, T, D], v [B, heads, R, T, Dv] in region layout (R regions of T tokens);
idx [B, R, topk] int64. See :mod:`.reference` for the exact definition.

On CUDA with Triton the fused kernels run (``torch.ops.zoo.routed_attention_fwd`` / ``_bwd``):
they read the routed key/value tiles straight from the un-gathered k/v through ``idx``, so the
topk-fold gathered copy of the reference never exists, forward or backward. Elsewhere the
reference runs (see :mod:`zoo.ops._dispatch`).
"""
import torch

from .._dispatch import HAS_TRITON, use_triton
from .reference import check_region_qkv, region_topk, routed_attention_reference, routing_attention_reference

__all__ = [
    'routing_attention', 'routed_attention', 'region_topk', 'routed_attention_reference',
    'routing_attention_reference', 'routed_attention_triton',
]


def routing_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int, scale: float) -> torch.Tensor:
    """Bi-level routing attention; Triton on CUDA, the pure-PyTorch reference elsewhere."""
    check_region_qkv(q, k, v)
    idx = region_topk(q, k, topk, scale)
    return routed_attention(q, k, v, idx, scale)


def routed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """Token attention over the routed regions ``idx``; Triton on CUDA, the reference elsewhere."""
    if use_triton(q, k, v):
        return routed_attention_triton(q, k, v, idx, scale)
    return routed_attention_reference(q, k, v, idx, scale)


def routed_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                            scale: float) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    if not HAS_TRITON:
        raise RuntimeError('zoo.ops.routed_attention_triton needs the `triton` package')
    check_region_qkv(q, k, v)
    B, _, R = q.shape[:3]
    if idx.dim() != 3 or idx.shape[:2] != (B, R):
        raise ValueError(f'routing indices must be [B={B}, R={R}, topk], got {tuple(idx.shape)}')
    out, _ = torch.ops.zoo.routed_attention_fwd(q, k, v, idx.to(torch.int32).contiguous(), float(scale))
    return out
