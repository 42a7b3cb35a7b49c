"""DaViT's channel ("group") attention: the readable specification.

    out = channel_attention_reference(q, k, v, scale=None)

q, k, v: [B, H, N, d] (H heads = channel groups of d channels, N tokens). Per head a d x d map

    A = softmax(scale * k^T v)            (rows: i, softmax over j; scale defaults to d ** -0.5)
    out[n, i] = sum_j A[i, j] q[n, j]     (out = q A^T: the map is applied to q)

which is DaViT's transposed form (the official code and timm compute (A q^T)^T). The cost is linear in
N; the d x d map is all that is ever materialised. Half-precision inputs get an fp32 softmax.
"""
from typing import Optional

import torch

__all__ = ['channel_attention_reference', 'check_channel_qkv']


def check_channel_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f'channel attention expects q, k, v of one shape [B, H, N, d]; got {tuple(q.shape)}, '
                         f'{tuple(k.shape)}, {tuple(v.shape)}')


def channel_attention_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """softmax(scale * k^T v) applied to q (see the module docstring)."""
    check_channel_qkv(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    attn = (k * scale).transpose(-1, -2) @ v
    # softmax in at least fp32 (fp16/bf16 are promoted; fp64 stays fp64)
    attn = attn.softmax(dim=-1, dtype=torch.promote_types(attn.dtype, torch.float32)).to(q.dtype)
    return (attn @ q.transpose(-1, -2)).transpose(-1, -2)
