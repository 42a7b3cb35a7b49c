"""``zoo.ops.outlook``: VOLO's outlook attention.

    outlook_attention(v, logits, num_heads, kernel_size=3, padding=1, stride=2, scale=None) -> out

v [B, H, W, C] (channels-last values), logits [B, ceil(H/s), ceil(W/s), num_heads * k^4] (the raw
``attn`` Linear output; the softmax is part of the op), out [B, H, W, C]; ``scale`` defaults to
(C / num_heads) ** -0.5. See :mod:`.reference` for the exact definition (unfold -> attention -> fold).

On CUDA with Triton the fused kernels run (``torch.ops.zoo.outlook_fwd`` / ``_bwd``, registered with
``torch.library``): they never build the k^2-times-larger unfolded tensor, and the backward is a
deterministic gather (no atomics). Elsewhere the reference runs (see :mod:`zoo.ops._dispatch`).
"""
from typing import Optional, Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path, compute_dtype
from .._dispatch_table import RULES
from .reference import check_outlook_args, outlook_attention_reference

__all__ = ['outlook_attention', 'outlook_attention_reference', 'outlook_attention_triton']


def outlook_attention(
        v: torch.Tensor,
        logits: torch.Tensor,
        num_heads: int,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 2,
        scale: Optional[float] = None,
        attn_drop: float = 0.,
) -> torch.Tensor:
    """Outlook attention; Triton on CUDA, the pure-PyTorch reference elsewhere (and whenever ``attn_drop`` > 0:
    the fused kernels have no dropout)."""
    if attn_drop == 0. and choose_path('outlook', (v, logits), RULES['outlook']) == 'triton':
        return outlook_attention_triton(v, logits, num_heads, kernel_size, padding, stride, scale)
    return outlook_attention_reference(v, logits, num_heads, kernel_size, padding, stride, scale, attn_drop)


def outlook_attention_triton(
        v: torch.Tensor,
        logits: torch.Tensor,
        num_heads: int,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 2,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('outlook_attention', v, logits)
    check_outlook_args(v, logits, num_heads, kernel_size, padding, stride)
    scale = (v.shape[-1] // num_heads) ** -0.5 if scale is None else float(scale)
    dtype = compute_dtype(v, logits)  # one dtype for every operand of the kernels' tl.dot
    v, logits = v.to(dtype), logits.to(dtype)
    out, _ = torch.ops.zoo.outlook_fwd(v, logits, num_heads, kernel_size, padding, stride, scale)
    return out


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration (only the Triton path goes through the custom ops)

# pixels / windows per program (BLOCK_P, BLOCK_L) and warps are autotuned (zoo.ops._autotune)


def _meta(v: torch.Tensor, logits: torch.Tensor, num_heads: int):
    B, H, W, C = v.shape
    h, w = logits.shape[1], logits.shape[2]
    D = C // num_heads
    return B, H, W, C, h, w, D, dict(BLOCK_D=_triton.next_power_of_2(D))


def _fwd_impl(v, logits, num_heads, kernel_size, padding, stride, scale) -> Tuple[torch.Tensor, torch.Tensor]:
    v, logits = v.contiguous(), logits.contiguous()
    B, H, W, C, h, w, D, blk = _meta(v, logits, num_heads)
    k2 = kernel_size * kernel_size
    out = torch.empty_like(v)
    # rows whose pixel falls in the padding are never written nor read
    lse = torch.empty((B, h, w, num_heads, k2), device=v.device, dtype=torch.float32)
    grid = lambda meta: (_triton.cdiv(H * W, meta['BLOCK_P']), B * num_heads)  # noqa: E731
    _tk.outlook_fwd_kernel[grid](
        v, logits, out, lse, H, W, h, w, C, num_heads, D, scale,
        K=kernel_size, PAD=padding, STRIDE=stride, K2P=_triton.next_power_of_2(k2), **blk)
    return out, lse


def _bwd_impl(dout, v, logits, lse, num_heads, kernel_size, padding, stride, scale):
    dout, v, logits = dout.contiguous(), v.contiguous(), logits.contiguous()
    B, H, W, C, h, w, D, blk = _meta(v, logits, num_heads)
    k2p = _triton.next_power_of_2(kernel_size * kernel_size)
    dv = torch.empty_like(v)
    dlogits = torch.empty_like(logits)
    common = dict(K=kernel_size, PAD=padding, STRIDE=stride, **blk)
    _tk.outlook_bwd_dlogits_kernel[lambda meta: (_triton.cdiv(h * w, meta['BLOCK_L']), B * num_heads)](
        dout, v, logits, dlogits, H, W, h, w, C, num_heads, D, scale, K2P=k2p, **common)
    _tk.outlook_bwd_dv_kernel[lambda meta: (_triton.cdiv(H * W, meta['BLOCK_P']), B * num_heads)](
        dout, logits, lse, dv, H, W, h, w, C, num_heads, D, scale, **common)
    return dv, dlogits


if HAS_TRITON:
    # importing the kernels' module (named triton.py, the house layout) binds `triton` in this
    # package to that submodule, so the library is imported as _triton
    import triton as _triton  # noqa: E402,I001

    from . import triton as _tk

    @torch.library.custom_op('zoo::outlook_fwd', mutates_args=())
    def _outlook_fwd(v: torch.Tensor, logits: torch.Tensor, num_heads: int, kernel_size: int, padding: int,
                     stride: int, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return _fwd_impl(v, logits, num_heads, kernel_size, padding, stride, scale)

    @_outlook_fwd.register_fake
    def _(v, logits, num_heads, kernel_size, padding, stride, scale):
        B, h, w = logits.shape[:3]
        lse = v.new_empty((B, h, w, num_heads, kernel_size * kernel_size), dtype=torch.float32)
        return torch.empty_like(v), lse

    @torch.library.custom_op('zoo::outlook_bwd', mutates_args=())
    def _outlook_bwd(dout: torch.Tensor, v: torch.Tensor, logits: torch.Tensor, lse: torch.Tensor, num_heads: int,
                     kernel_size: int, padding: int, stride: int, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return _bwd_impl(dout, v, logits, lse, num_heads, kernel_size, padding, stride, scale)

    @_outlook_bwd.register_fake
    def _(dout, v, logits, lse, num_heads, kernel_size, padding, stride, scale):
        return torch.empty_like(v), torch.empty_like(logits)

    def _setup_context(ctx, inputs, output):
        v, logits, num_heads, kernel_size, padding, stride, scale = inputs
        ctx.args = (num_heads, kernel_size, padding, stride, scale)
        ctx.save_for_backward(v, logits, output[1])
        ctx.mark_non_differentiable(output[1])

    def _backward(ctx, dout, dlse):
        v, logits, lse = ctx.saved_tensors
        dv, dlogits = torch.ops.zoo.outlook_bwd(dout, v, logits, lse, *ctx.args)
        return dv, dlogits, None, None, None, None, None

    _outlook_fwd.register_autograd(_backward, setup_context=_setup_context)
