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
from typing import Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path, compute_dtype
from .._dispatch_table import RULES
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
    if choose_path('routing', (q, k, v), RULES['routing']) == 'triton':
        return routed_attention_triton(q, k, v, idx, scale)
    return routed_attention_reference(q, k, v, idx, scale)


def routed_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                            scale: float) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('routed_attention', q, k, v, idx)
    check_region_qkv(q, k, v)
    dtype = compute_dtype(q, k, v)  # one dtype for every operand of the kernels' tl.dot
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    B, _, R = q.shape[:3]
    if idx.dim() != 3 or idx.shape[:2] != (B, R):
        raise ValueError(f'routing indices must be [B={B}, R={R}, topk], got {tuple(idx.shape)}')
    out, _ = torch.ops.zoo.routed_attention_fwd(q, k, v, idx.to(torch.int32).contiguous(), float(scale))
    return out


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration (only the Triton path goes through the custom ops)

def _pow2(x: int) -> int:
    return max(16, _triton.next_power_of_2(x))  # tl.dot needs >= 16


def _blocks(T: int, topk: int, D: int, DV: int, routed_side: str) -> dict:
    """Tile sizes: the own-region side covers T tokens, the routed side a packed topk * T sequence."""
    own, routed = min(64, _pow2(T)), min(64, _pow2(topk * T))
    m, n = (own, routed) if routed_side == 'keys' else (routed, own)
    return dict(BLOCK_M=m, BLOCK_N=n, BLOCK_D=_pow2(D), BLOCK_DV=_pow2(DV))


def _ieee(q: torch.Tensor) -> bool:
    # fp32 inputs follow torch's own matmul setting: exact fp32 unless TF32 was allowed
    return q.dtype == torch.float32 and not (q.is_cuda and torch.backends.cuda.matmul.allow_tf32)


def _fwd_impl(q, k, v, idx, scale):
    B, H, R, T, D = q.shape
    DV = v.shape[-1]
    topk = idx.shape[-1]
    q, k, v, idx = q.contiguous(), k.contiguous(), v.contiguous(), idx.contiguous()
    out = torch.empty((B, H, R, T, DV), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, H, R, T), device=q.device, dtype=torch.float32)
    blk = _blocks(T, topk, D, DV, 'keys')
    m_tiles = _triton.cdiv(T, blk['BLOCK_M'])
    _tk.routed_fwd_kernel[(R * m_tiles, B * H)](
        q, k, v, idx, out, lse, H, R, T, D, DV, topk, m_tiles, scale, IEEE=_ieee(q), **blk)
    return out, lse


def _invert_routing(idx: torch.Tensor):
    """CSR of the routing table per key region: ptr [B, R+1] and the query regions inv_q [B, R*topk]."""
    B, R, topk = idx.shape
    flat = idx.reshape(B, R * topk).long()
    order = torch.argsort(flat, dim=1, stable=True)
    inv_q = (order // topk).to(torch.int32)
    counts = torch.zeros((B, R), dtype=torch.int64, device=idx.device).scatter_add_(1, flat, torch.ones_like(flat))
    ptr = torch.cat([counts.new_zeros(B, 1), counts.cumsum(1)], dim=1).to(torch.int32)
    return ptr.contiguous(), inv_q.contiguous()


def _bwd_impl(do, q, k, v, idx, out, lse, scale):
    B, H, R, T, D = q.shape
    DV = v.shape[-1]
    topk = idx.shape[-1]
    q, k, v, out, do, idx = (t.contiguous() for t in (q, k, v, out, do, idx))
    delta = (do.float() * out.float()).sum(-1).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    ieee = _ieee(q)
    blk = _blocks(T, topk, D, DV, 'keys')
    m_tiles = _triton.cdiv(T, blk['BLOCK_M'])
    _tk.routed_bwd_dq_kernel[(R * m_tiles, B * H)](
        q, k, v, idx, do, lse, delta, dq, H, R, T, D, DV, topk, m_tiles, scale, IEEE=ieee, **blk)
    ptr, inv_q = _invert_routing(idx)
    blk = _blocks(T, topk, D, DV, 'queries')
    n_tiles = _triton.cdiv(T, blk['BLOCK_N'])
    _tk.routed_bwd_dkdv_kernel[(R * n_tiles, B * H)](
        q, k, v, ptr, inv_q, do, lse, delta, dk, dv, H, R, T, D, DV, topk, n_tiles, scale, IEEE=ieee, **blk)
    return dq, dk, dv


if HAS_TRITON:
    # the kernels' module is named triton.py (the house layout); importing it binds the name
    # `triton` in this package to that submodule, so the library is imported as _triton
    import triton as _triton

    from . import triton as _tk

    @torch.library.custom_op('zoo::routed_attention_fwd', mutates_args=())
    def _routed_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                    scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return _fwd_impl(q, k, v, idx, scale)

    @_routed_fwd.register_fake
    def _(q, k, v, idx, scale):
        return q.new_empty((*q.shape[:4], v.shape[-1])), q.new_empty(q.shape[:4], dtype=torch.float32)

    @torch.library.custom_op('zoo::routed_attention_bwd', mutates_args=())
    def _routed_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                    out: torch.Tensor, lse: torch.Tensor, scale: float
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _bwd_impl(do, q, k, v, idx, out, lse, scale)

    @_routed_bwd.register_fake
    def _(do, q, k, v, idx, out, lse, scale):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _setup_context(ctx, inputs, output):
        q, k, v, idx, scale = inputs
        out, lse = output
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, idx, out, lse)
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, dout, dlse):
        q, k, v, idx, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.zoo.routed_attention_bwd(dout.to(q.dtype), q, k, v, idx, out, lse, ctx.scale)
        return dq, dk, dv, None, None

    _routed_fwd.register_autograd(_backward, setup_context=_setup_context)
