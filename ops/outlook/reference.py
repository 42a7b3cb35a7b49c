"""Outlook attention (VOLO): the readable specification.

    out = outlook_attention_reference(v, logits, num_heads, kernel_size=3, padding=1, stride=2, scale=None)

v: [B, H, W, C] values (channels-last). The output grid is h x w = ceil(H / stride) x ceil(W / stride);
``logits``: [B, h, w, num_heads * k^4], the raw output of VOLO's ``attn`` Linear on the pooled input,
read per location as num_heads matrices of k^2 x k^2 (row p: the output position in the window,
column q: the value position). For every location l of the grid and every head:

1. V_l = the k x k patch of v around l (top-left at l * stride - padding; zeros outside the map),
2. A_l = softmax(scale * logits_l) over q,
3. Y_l = A_l @ V_l, and each of the k^2 rows of Y_l is added back at the pixel it came from
   (a fold: overlapping windows sum; rows that land in the zero padding are dropped).

That is exactly unfold -> per-pixel k^2 x k^2 attention -> fold, written here with
``F.unfold`` / ``F.fold`` as timm and the official code do (so it matches them bit for bit).
The result is [B, H, W, C]. The softmax runs in fp32 for half-precision inputs.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ['outlook_attention_reference', 'check_outlook_args', 'outlook_grid']


def outlook_grid(H: int, W: int, kernel_size: int, padding: int, stride: int):
    """The attention grid (ceil(H / stride), ceil(W / stride)); the unfold with these parameters must produce it."""
    h, w = math.ceil(H / stride), math.ceil(W / stride)
    uh = (H + 2 * padding - kernel_size) // stride + 1
    uw = (W + 2 * padding - kernel_size) // stride + 1
    if (uh, uw) != (h, w):
        raise ValueError(
            f'outlook attention: kernel_size={kernel_size}, padding={padding}, stride={stride} on a {H}x{W} map '
            f'gives {uh}x{uw} windows, not the {h}x{w} = ceil(map / stride) grid of the attention weights')
    return h, w


def check_outlook_args(v: torch.Tensor, logits: torch.Tensor, num_heads: int, kernel_size: int, padding: int,
                       stride: int):
    if v.dim() != 4:
        raise ValueError(f'outlook attention expects v as [B, H, W, C], got shape {tuple(v.shape)}')
    B, H, W, C = v.shape
    if num_heads < 1 or C % num_heads:
        raise ValueError(f'outlook attention: {C} channels do not split into {num_heads} heads')
    if kernel_size < 1 or stride < 1 or padding < 0:
        raise ValueError(f'outlook attention: bad kernel_size={kernel_size} / padding={padding} / stride={stride}')
    h, w = outlook_grid(H, W, kernel_size, padding, stride)
    expected = (B, h, w, num_heads * kernel_size ** 4)
    if tuple(logits.shape) != expected:
        raise ValueError(f'outlook attention: logits of shape {tuple(logits.shape)} do not fit v {tuple(v.shape)}; '
                         f'expected {expected} ([B, ceil(H/s), ceil(W/s), heads * k^4])')
    return h, w


def outlook_attention_reference(
        v: torch.Tensor,
        logits: torch.Tensor,
        num_heads: int,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 2,
        scale: Optional[float] = None,
        attn_drop: float = 0.,
) -> torch.Tensor:
    """unfold -> softmax(scale * logits) @ patches -> fold (see the module docstring).

    ``attn_drop`` > 0 applies dropout to the attention maps (training-time regularisation; only this path has it).
    """
    h, w = check_outlook_args(v, logits, num_heads, kernel_size, padding, stride)
    B, H, W, C = v.shape
    k2 = kernel_size * kernel_size
    d = C // num_heads
    scale = d ** -0.5 if scale is None else scale
    patches = F.unfold(v.permute(0, 3, 1, 2), kernel_size, padding=padding, stride=stride)  # [B, C*k2, h*w]
    patches = patches.reshape(B, num_heads, d, k2, h * w).permute(0, 1, 4, 3, 2)  # [B, heads, L, k2(q), d]
    attn = logits.reshape(B, h * w, num_heads, k2, k2).permute(0, 2, 1, 3, 4)  # [B, heads, L, k2(p), k2(q)]
    attn = attn * scale
    # softmax in at least fp32 (fp16/bf16 are promoted; fp64 stays fp64)
    attn = attn.softmax(dim=-1, dtype=torch.promote_types(attn.dtype, torch.float32)).to(v.dtype)
    if attn_drop > 0.:
        attn = F.dropout(attn, attn_drop, training=True)
    y = (attn @ patches).permute(0, 1, 4, 3, 2).reshape(B, C * k2, h * w)  # [B, C*k2(p), L]
    out = F.fold(y, output_size=(H, W), kernel_size=kernel_size, padding=padding, stride=stride)
    return out.permute(0, 2, 3, 1)
