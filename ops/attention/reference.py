"""Multi-head attention over many small sequences with an additive bias: the readable specification.

    out[b, h] = softmax(scale * q[b, h] @ k[b, h]^T + bias[b % Bb, h]) @ v[b, h]

Shapes: q [B, H, N, D], k [B, H, M, D], v [B, H, M, Dv]; ``bias`` is optional and broadcasts
to [Bb, H, N, M] where ``B % Bb == 0`` and batch b uses bias[b % Bb]. That one rule covers
a table shared by every window (Bb = 1: relative-position / attention-bias tables), one mask
per window position (Bb = windows per image, with B = images * windows) and a bias per item
(Bb = B). The softmax is computed in at least fp32 (fp64 stays fp64) whatever the input dtype
(MOAT and others rely on it).

This is the path every CPU user and every ONNX export runs, so it is plain, vectorised torch.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .._dispatch import is_exporting

__all__ = ['attention_reference', 'attention_math', 'attention_sdpa', 'normalize_bias']


def normalize_bias(bias: Optional[torch.Tensor], q: torch.Tensor, k: torch.Tensor) -> Optional[torch.Tensor]:
    """Check ``bias`` against q/k and return it as a 4-D [Bb, Hb, N, M] view (Hb in {1, H})."""
    if bias is None:
        return None
    B, H, N, _ = q.shape
    M = k.shape[2]
    if bias.dim() == 2:
        bias = bias[None, None]
    elif bias.dim() == 3:
        bias = bias[None]
    if bias.dim() != 4:
        raise ValueError(f'attention bias must be 2-D to 4-D, got shape {tuple(bias.shape)}')
    Bb, Hb, Nb, Mb = bias.shape
    if (Nb, Mb) != (N, M) or Hb not in (1, H) or Bb < 1 or B % Bb:
        raise ValueError(
            f'attention bias of shape {tuple(bias.shape)} does not fit q {tuple(q.shape)} / k {tuple(k.shape)}: '
            f'expected [Bb, {H} or 1, {N}, {M}] with batch {B} a multiple of Bb')
    return bias


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f'attention expects 4-D q, k, v [B, H, L, D]; got {tuple(q.shape)}, {tuple(k.shape)}, '
                         f'{tuple(v.shape)}')
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f'attention q/k/v shapes do not agree: q {tuple(q.shape)}, k {tuple(k.shape)}, '
                         f'v {tuple(v.shape)} (need q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv])')


# below this many attention scores (B * H * N * M) the written-out form launches faster than SDPA
_SDPA_MIN_SCORES = 1 << 17


def attention_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """Plain-PyTorch attention with a broadcast additive bias (see the module docstring).

    Eager calls with at least ``_SDPA_MIN_SCORES`` scores use ``F.scaled_dot_product_attention`` (on
    CPU its fused kernel is 1.5-4x faster than the written-out form at window sizes of 49-784 tokens);
    smaller ones, exports and scripting run the written-out matmul / softmax / matmul of
    :func:`attention_math` (cheaper to launch for a few tiny windows, and what every exporter
    understands). Both compute the same function; a test holds them together.
    """
    check_qkv(q, k, v)
    bias = normalize_bias(bias, q, k)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    B, H, N, D = q.shape
    if is_exporting() or B * H * N * k.shape[2] < _SDPA_MIN_SCORES:
        return attention_math(q, k, v, bias, scale)
    return attention_sdpa(q, k, v, bias, scale)


def attention_sdpa(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor],
        scale: float,
) -> torch.Tensor:
    """The same function through ``F.scaled_dot_product_attention`` (bias already normalized to 4-D): PyTorch's
    fused kernels (flash / memory-efficient / cuDNN on CUDA; they take the additive bias and give its gradient)."""
    B, H, N, D = q.shape
    if bias is not None and bias.shape[0] > 1 and q.is_cuda:
        # CUDA's fused SDPA kernels take 4-D inputs only (a 5-D call falls back to the unfused math kernel):
        # repeat the per-window bias over the images, [B/Bb, Bb, ...] -> [B, ...] (batch b meets bias[b % Bb])
        Bb = bias.shape[0]
        mask = bias.to(q.dtype).expand(B // Bb, *bias.shape).reshape(B, bias.shape[1], N, bias.shape[3])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if bias is not None and bias.shape[0] > 1:
        # batch b meets bias[b % Bb]: view the batch as [B/Bb, Bb] and let the mask broadcast (CPU SDPA takes 5-D)
        Bb = bias.shape[0]
        out = F.scaled_dot_product_attention(
            q.view(B // Bb, Bb, H, N, D), k.view(B // Bb, Bb, H, -1, D), v.view(B // Bb, Bb, H, -1, v.shape[-1]),
            attn_mask=bias.to(q.dtype), scale=scale)
        return out.view(B, H, N, v.shape[-1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype), scale=scale)


def attention_math(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor],
        scale: float,
) -> torch.Tensor:
    """The written-out form (bias already normalized to 4-D): what ONNX / TorchScript see."""
    B, H, N, D = q.shape
    M = k.shape[2]
    q3, k3 = q.reshape(B * H, N, D), k.reshape(B * H, M, D)
    if bias is not None and bias.shape[0] == 1 and (bias.shape[1] == 1 or H == 1):
        # one [N, M] bias for every item: scale, q @ k^T and the bias add in one baddbmm
        attn = torch.baddbmm(bias.reshape(1, N, M).to(q.dtype), q3, k3.transpose(1, 2), alpha=scale)
    else:
        attn = torch.bmm(q3 * scale if scale != 1.0 else q3, k3.transpose(1, 2))
        if bias is not None:
            Bb = bias.shape[0]
            # [B/Bb, Bb, H, N, M] + [Bb, Hb, N, M]: batch b meets bias[b % Bb], no copy of the bias
            attn = (attn.view(B // Bb, Bb, H, N, M) + bias).view(B * H, N, M)
    # softmax in at least fp32 (fp16/bf16 inputs are promoted; fp64 stays fp64)
    attn = attn.softmax(dim=-1, dtype=torch.promote_types(attn.dtype, torch.float32)).to(v.dtype)
    return torch.bmm(attn, v.reshape(B * H, M, v.shape[-1])).view(B, H, N, v.shape[-1])
