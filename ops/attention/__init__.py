"""``zoo.ops.attention``: multi-head attention over many small sequences with an additive bias.

    attention(q, k, v, bias=None, scale=None) -> out

q [B, H, N, D], k [B, H, M, D], v [B, H, M, Dv]; ``bias`` broadcasts to [Bb, H, N, M] with
``B % Bb == 0`` (batch b reads bias[b % Bb]); ``scale`` defaults to D ** -0.5. See
:mod:`.reference` for the exact definition. Shared by the windowed / grouped / cascaded
attention of EfficientViT, DaViT, MOAT, LITv2, PATNet and CATANet.

On CUDA with Triton the fused kernels run (``torch.ops.zoo.attention_fwd`` / ``_bwd``,
registered with ``torch.library`` so ``torch.compile(fullgraph=True)`` and ``torch.export``
see one op each); elsewhere the reference runs (see :mod:`zoo.ops._dispatch`).
"""
from typing import Optional, Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path, compute_dtype
from .._dispatch_table import RULES
from .reference import attention_reference, attention_sdpa, check_qkv, normalize_bias

__all__ = ['attention', 'attention_reference', 'attention_triton', 'attention_torch']


def attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """Biased attention: on CUDA the measured-fastest of the Triton kernels and PyTorch's SDPA, the pure-PyTorch
    reference elsewhere (see :mod:`zoo.ops._dispatch`)."""
    path = choose_path('attention', (q, k, v, bias), RULES['attention'])
    if path == 'triton':
        return attention_triton(q, k, v, bias, scale)
    if path == 'torch':
        return attention_torch(q, k, v, bias, scale)
    return attention_reference(q, k, v, bias, scale)


def attention_torch(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """PyTorch's fused kernels (``F.scaled_dot_product_attention``) at every size."""
    check_qkv(q, k, v)
    bias = normalize_bias(bias, q, k)
    return attention_sdpa(q, k, v, bias, q.shape[-1] ** -0.5 if scale is None else scale)


def attention_triton(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        scale: Optional[float] = None,
) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('attention', q, k, v, bias)
    check_qkv(q, k, v)
    bias = normalize_bias(bias, q, k)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    dtype = compute_dtype(q, k, v)  # one dtype for every operand of the kernels' tl.dot
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if bias is not None:
        bias = bias.to(dtype)
    out, _ = torch.ops.zoo.attention_fwd(q, k, v, bias, scale)
    return out


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration (only the Triton path goes through the custom ops)

def _blocks(N: int, M: int, D: int, DV: int):
    pow2 = lambda x: max(16, _triton.next_power_of_2(x))  # noqa: E731  (tl.dot needs >= 16)
    return dict(BLOCK_M=min(64, pow2(N)), BLOCK_N=min(64, pow2(M)), BLOCK_D=pow2(D), BLOCK_DV=pow2(DV))


def _ieee(q: torch.Tensor) -> bool:
    # fp32 inputs follow torch's own matmul setting: exact fp32 unless TF32 was allowed
    return q.dtype == torch.float32 and not (q.is_cuda and torch.backends.cuda.matmul.allow_tf32)


def _bias_args(bias: Optional[torch.Tensor], H: int, q: torch.Tensor):
    if bias is None:
        return q, 1, (0, 0, 0, 0)  # any pointer; never read
    Bb, Hb = bias.shape[:2]
    st = bias.stride()
    return bias, Bb, (st[0], st[1] if Hb == H else 0, st[2], st[3])


def _fwd_impl(q, k, v, bias, scale) -> Tuple[torch.Tensor, torch.Tensor]:
    check_qkv(q, k, v)
    bias = normalize_bias(bias, q, k)  # the op accepts every bias form attention() does
    B, H, N, D = q.shape
    M, DV = k.shape[2], v.shape[3]
    # the forward kernel reads q / k / v through their strides (qkv-Linear views need no copy); the channel must be
    # the unit-stride axis
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty((B, H, N, DV), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, H, N), device=q.device, dtype=torch.float32)
    bias_t, BB, sb = _bias_args(bias, H, q)
    blk = _blocks(N, M, D, DV)
    grid = lambda meta: (_triton.cdiv(N, meta['BLOCK_M']), B * H)  # noqa: E731  (BLOCK_M is autotuned)
    _tk.attn_fwd_kernel[grid](
        q, k, v, bias_t, out, lse,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3], *sb,
        H, N, M, D, DV, BB, scale,
        HAS_BIAS=bias is not None, IEEE=_ieee(q), BLOCK_D=blk['BLOCK_D'], BLOCK_DV=blk['BLOCK_DV'])
    return out, lse


def _bwd_impl(do, q, k, v, bias, out, lse, scale, bias_requires_grad):
    bias_shape = bias.shape if bias is not None else None
    bias = normalize_bias(bias, q, k)
    B, H, N, D = q.shape
    M, DV = k.shape[2], v.shape[3]
    q, k, v, out, do = (t.contiguous() for t in (q, k, v, out, do))
    blk = _blocks(N, M, D, DV)
    delta = torch.empty((B, H, N), device=q.device, dtype=torch.float32)
    _tk.attn_bwd_preprocess_kernel[(_triton.cdiv(N, blk['BLOCK_M']), B * H)](
        out, do, delta, N, DV, BLOCK_M=blk['BLOCK_M'], BLOCK_DV=blk['BLOCK_DV'])
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    bias_t, BB, sb = _bias_args(bias, H, q)
    write_ds = bias is not None and bias_requires_grad
    ds = torch.empty((B, H, N, M), device=q.device, dtype=torch.float32) if write_ds else delta
    common = dict(HAS_BIAS=bias is not None, IEEE=_ieee(q), **blk)
    _tk.attn_bwd_dkdv_kernel[(_triton.cdiv(M, blk['BLOCK_N']), B * H)](
        q, k, v, bias_t, do, lse, delta, dk, dv, ds, H, N, M, D, DV, BB, scale, *sb,
        WRITE_DS=write_ds, **common)
    _tk.attn_bwd_dq_kernel[(_triton.cdiv(N, blk['BLOCK_M']), B * H)](
        q, k, v, bias_t, do, lse, delta, dq, H, N, M, D, DV, BB, scale, *sb, **common)
    if write_ds:
        dbias = _reduce_to_bias(ds, bias).reshape(bias_shape)
    else:
        dbias = q.new_empty(0)
    return dq, dk, dv, dbias


def _reduce_to_bias(ds: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Sum the per-item logit gradient [B, H, N, M] over the batches and heads the bias broadcast to."""
    B, H, N, M = ds.shape
    Bb, Hb = bias.shape[:2]
    g = ds.view(B // Bb, Bb, H, N, M).sum(0)
    if Hb == 1 and H != 1:
        g = g.sum(1, keepdim=True)
    return g.to(bias.dtype)


if HAS_TRITON:
    # the kernels' module is named triton.py (the house layout); importing it binds the name
    # `triton` in this package to that submodule, so the library is imported as _triton
    import triton as _triton  # noqa: E402,I001

    from . import triton as _tk

    @torch.library.custom_op('zoo::attention_fwd', mutates_args=())
    def _attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
                       scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return _fwd_impl(q, k, v, bias, scale)

    @_attention_fwd.register_fake
    def _(q, k, v, bias, scale):
        B, H, N, _ = q.shape
        return q.new_empty((B, H, N, v.shape[-1])), q.new_empty((B, H, N), dtype=torch.float32)

    @torch.library.custom_op('zoo::attention_bwd', mutates_args=())
    def _attention_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       bias: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor, scale: float,
                       bias_requires_grad: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return _bwd_impl(do, q, k, v, bias, out, lse, scale, bias_requires_grad)

    @_attention_bwd.register_fake
    def _(do, q, k, v, bias, out, lse, scale, bias_requires_grad):
        dbias = torch.empty_like(bias) if (bias is not None and bias_requires_grad) else q.new_empty(0)
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dbias

    def _setup_context(ctx, inputs, output):
        q, k, v, bias, scale = inputs
        out, lse = output
        ctx.scale = scale
        ctx.has_bias = bias is not None
        ctx.save_for_backward(q, k, v, bias, out, lse)
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, dout, dlse):
        q, k, v, bias, out, lse = ctx.saved_tensors
        bias_rg = ctx.has_bias and ctx.needs_input_grad[3]
        dq, dk, dv, dbias = torch.ops.zoo.attention_bwd(dout.to(q.dtype), q, k, v, bias, out, lse, ctx.scale, bias_rg)
        return dq, dk, dv, (dbias if bias_rg else None), None

    _attention_fwd.register_autograd(_backward, setup_context=_setup_context)
