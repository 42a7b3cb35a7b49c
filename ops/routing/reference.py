"""Bi-level routing attention (BiFormer, CVPR 2023): the readable specification.

Tensors are in *region layout*: the map is cut into R = S x S regions of T = h x w tokens each,
and every q / k / v is stored as [B, heads, R, T, head_dim] (heads are contiguous channel slices).

1. Region level (routing): region descriptors are the token means of q and k; the region
   affinity is ``scale * mean(q_r) . mean(k_s)`` summed over *all* heads (the whole channel
   dim, as in the official model); each query region keeps the ``topk`` most affine key regions.
   The routing is not differentiable (detached), exactly as the released models train.
2. Token level: every query of region r attends (softmax(scale * q k^T) v, per head) to the
   topk * T tokens of its routed regions.

:func:`routed_attention_reference` is the official formulation: it gathers the routed key/value
regions into a [B, heads, R, topk * T, d] copy and runs dense attention. It is the path CPU users
and ONNX exports run; the Triton kernels compute the same thing reading the routed tiles straight
from the un-gathered k/v through the indices.
"""
import torch
import torch.nn.functional as F

__all__ = ['region_topk', 'routed_attention_reference', 'routing_attention_reference', 'check_region_qkv']


def check_region_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 5 or k.dim() != 5 or v.dim() != 5:
        raise ValueError(f'routing attention expects 5-D q, k, v [B, heads, regions, tokens, dim]; got '
                         f'{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}')
    if q.shape != k.shape or k.shape[:4] != v.shape[:4]:
        raise ValueError(f'routing attention q/k/v shapes do not agree: q {tuple(q.shape)}, k {tuple(k.shape)}, '
                         f'v {tuple(v.shape)} (need q, k [B,H,R,T,D], v [B,H,R,T,Dv])')


@torch.no_grad()
def region_topk(q: torch.Tensor, k: torch.Tensor, topk: int, scale: float) -> torch.Tensor:
    """Indices [B, R, topk] (int64) of the key regions each query region routes to.

    ``topk`` larger than the number of regions is clamped to it (every region is then routed).
    """
    num_regions = q.shape[2]
    topk = min(int(topk), num_regions)
    if topk < 1:
        raise ValueError(f'routing topk must be >= 1, got {topk}')
    q_region = q.detach().mean(dim=3)  # [B, H, R, D]
    k_region = k.detach().mean(dim=3)
    logits = torch.einsum('bhrd,bhsd->brs', q_region * scale, k_region)
    return logits.topk(topk, dim=-1).indices


def _gather_regions(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, H, R, T, D], idx [B, R, K] -> the routed regions [B, H, R, K * T, D] (a K-fold copy)."""
    B, H, R, T, D = x.shape
    K = idx.shape[-1]
    index = idx.reshape(B, 1, R * K, 1, 1).expand(B, H, R * K, T, D)
    return torch.gather(x, 2, index).reshape(B, H, R, K * T, D)


def routed_attention_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        idx: torch.Tensor,
        scale: float,
) -> torch.Tensor:
    """Attention of each query region over its routed key/value regions (gather formulation)."""
    check_region_qkv(q, k, v)
    B, H, R, T, D = q.shape
    k_sel = _gather_regions(k, idx)  # [B, H, R, K*T, D]
    v_sel = _gather_regions(v, idx)
    # softmax(scale * q k_sel^T) v_sel per (head, region); SDPA is that exact computation, fused on CPU
    out = F.scaled_dot_product_attention(
        q.reshape(B, H * R, T, D), k_sel.reshape(B, H * R, k_sel.shape[-2], D),  # no -1: B may be 0
        v_sel.reshape(B, H * R, v_sel.shape[-2], v.shape[-1]),
        scale=scale)
    return out.view(B, H, R, T, v.shape[-1])


def routing_attention_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        topk: int,
        scale: float,
) -> torch.Tensor:
    """Full bi-level routing attention: region top-k routing, then routed token attention."""
    check_region_qkv(q, k, v)
    idx = region_topk(q, k, topk, scale)
    return routed_attention_reference(q, k, v, idx, scale)
