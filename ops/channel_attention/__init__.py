"""``zoo.ops.channel_attention``: DaViT's channel ("group") attention.

    channel_attention(q, k, v, scale=None) -> out

q, k, v [B, H, N, d]; out [B, H, N, d] = q A^T with A = softmax(scale * k^T v) (d x d per head); ``scale``
defaults to d ** -0.5. See :mod:`.reference`. On CUDA with Triton the fused kernels run
(``torch.ops.zoo.channel_attention_fwd`` / ``_bwd``, registered with ``torch.library``); elsewhere the
reference (see :mod:`zoo.ops._dispatch`).
"""
from typing import Optional, Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path, compute_dtype
from .._dispatch_table import RULES
from .reference import channel_attention_reference, check_channel_qkv

__all__ = ['channel_attention', 'channel_attention_reference', 'channel_attention_triton']


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """Channel attention; Triton on CUDA, the pure-PyTorch reference elsewhere."""
    if choose_path('channel_attention', (q, k, v), RULES['channel_attention']) == 'triton':
        return channel_attention_triton(q, k, v, scale)
    return channel_attention_reference(q, k, v, scale)


def channel_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             scale: Optional[float] = None) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('channel_attention', q, k, v)
    check_channel_qkv(q, k, v)
    dtype = compute_dtype(q, k, v)  # one dtype for every operand of the kernels' tl.dot
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    out, _ = torch.ops.zoo.channel_attention_fwd(q, k, v, scale)
    return out


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration

_BLOCK_N = 64


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    # the kernels take batch/head/token strides; the channel stride must be 1 (true for qkv-Linear views)
    return t if t.stride(-1) == 1 else t.contiguous()


def _common(q: torch.Tensor):
    ieee = q.dtype == torch.float32 and not (q.is_cuda and torch.backends.cuda.matmul.allow_tf32)
    return dict(IEEE=ieee, BLOCK_N=_BLOCK_N, BLOCK_D=max(16, _triton.next_power_of_2(q.shape[-1])))


def _fwd_impl(q, k, v, scale):
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    B, H, N, D = q.shape
    attn = torch.empty((B, H, D, D), device=q.device, dtype=torch.float32)
    out = torch.empty((B, H, N, D), device=q.device, dtype=q.dtype)
    common = _common(q)
    _tk.chattn_map_kernel[(B * H,)](k, v, attn, *k.stride()[:3], *v.stride()[:3], H, N, D, scale, **common)
    _tk.chattn_out_kernel[(_triton.cdiv(N, _BLOCK_N), B * H)](q, attn, out, *q.stride()[:3], H, N, D, **common)
    return out, attn


def _bwd_impl(dout, q, k, v, attn, scale):
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    dout = dout.contiguous()
    B, H, N, D = q.shape
    ds = torch.empty_like(attn)
    common = _common(q)
    _tk.chattn_bwd_map_kernel[(B * H,)](dout, q, attn, ds, *q.stride()[:3], H, N, D, scale, **common)
    dq, dk, dv = (torch.empty((B, H, N, D), device=q.device, dtype=q.dtype) for _ in range(3))
    _tk.chattn_bwd_tokens_kernel[(_triton.cdiv(N, _BLOCK_N), B * H)](
        dout, q, k, v, attn, ds, dq, dk, dv, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], H, N, D, **common)
    return dq, dk, dv


if HAS_TRITON:
    # importing the kernels' module (named triton.py) binds `triton` here to it: the library is _triton
    import triton as _triton  # noqa: E402,I001

    from . import triton as _tk

    @torch.library.custom_op('zoo::channel_attention_fwd', mutates_args=())
    def _chattn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return _fwd_impl(q, k, v, scale)

    @_chattn_fwd.register_fake
    def _(q, k, v, scale):
        B, H, N, D = q.shape
        return q.new_empty((B, H, N, D)), q.new_empty((B, H, D, D), dtype=torch.float32)

    @torch.library.custom_op('zoo::channel_attention_bwd', mutates_args=())
    def _chattn_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn: torch.Tensor,
                    scale: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _bwd_impl(dout, q, k, v, attn, scale)

    @_chattn_bwd.register_fake
    def _(dout, q, k, v, attn, scale):
        return tuple(q.new_empty(q.shape) for _ in range(3))

    def _setup_context(ctx, inputs, output):
        q, k, v, scale = inputs
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, output[1])
        ctx.mark_non_differentiable(output[1])

    def _backward(ctx, dout, dattn):
        q, k, v, attn = ctx.saved_tensors
        dq, dk, dv = torch.ops.zoo.channel_attention_bwd(dout.to(q.dtype), q, k, v, attn, ctx.scale)
        return dq, dk, dv, None

    _chattn_fwd.register_autograd(_backward, setup_context=_setup_context)
