"""``zoo.ops.neighborhood``: 2-D neighborhood aggregation with NATTEN 0.17 semantics.

    neighborhood_qk(q, k, kernel_size, dilation=1, rpb=None) -> attn [B, heads, H, W, kh*kw]
    neighborhood_av(attn, v, kernel_size, dilation=1)         -> out  [B, heads, H, W, D]
    neighborhood_rpb(rpb, H, W, kernel_size, dilation=1)      -> bias [heads, H, W, kh*kw]

Replaces ``natten.functional.na2d_qk`` / ``na2d_av`` of NATTEN 0.17 (removed in NATTEN 0.20) for
OverLoCK's ContMix and A2Mamba's MASS. Border windows slide inward (no padding), dilation splits each
axis into residue classes; see :mod:`.reference` for the exact rules. On CUDA with Triton the fused
kernels run (they never materialise the k*k-expanded neighbour tensors); elsewhere the reference runs.
"""
from typing import Optional, Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path, compute_dtype
from .._dispatch_table import RULES
from .reference import (
    check_neighborhood,
    gather_rpb,
    neighbor_tables,
    neighborhood_av_reference,
    neighborhood_qk_reference,
)

__all__ = [
    'neighborhood_qk', 'neighborhood_av', 'neighborhood_rpb', 'neighborhood_qk_reference',
    'neighborhood_av_reference', 'neighbor_tables', 'neighborhood_qk_triton', 'neighborhood_av_triton',
]


def neighborhood_rpb(rpb: torch.Tensor, H: int, W: int, kernel_size, dilation=1) -> torch.Tensor:
    """The relative-position bias each pixel adds to each tap: [heads, 2kh-1, 2kw-1] -> [heads, H, W, kh*kw]."""
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    _, by = neighbor_tables(H, kh, dh, rpb.device)
    _, bx = neighbor_tables(W, kw, dw, rpb.device)
    return gather_rpb(rpb, by, bx)


def neighborhood_qk(q: torch.Tensor, k: torch.Tensor, kernel_size, dilation=1,
                    rpb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q . k over each pixel's neighborhood (+ relative-position bias); no scale, no softmax."""
    if choose_path('neighborhood', (q, k, rpb), RULES['neighborhood']) == 'triton':
        return neighborhood_qk_triton(q, k, kernel_size, dilation, rpb)
    return neighborhood_qk_reference(q, k, kernel_size, dilation, rpb)


def neighborhood_av(attn: torch.Tensor, v: torch.Tensor, kernel_size, dilation=1) -> torch.Tensor:
    """Weights . values over each pixel's neighborhood."""
    if choose_path('neighborhood', (attn, v), RULES['neighborhood']) == 'triton':
        return neighborhood_av_triton(attn, v, kernel_size, dilation)
    return neighborhood_av_reference(attn, v, kernel_size, dilation)


def neighborhood_qk_triton(q: torch.Tensor, k: torch.Tensor, kernel_size, dilation=1,
                           rpb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('neighborhood_qk', q, k, rpb)
    dtype = compute_dtype(q, k)  # the output's dtype: one rule for every op
    q, k = q.to(dtype), k.to(dtype)
    B, nh, H, W, D = q.shape
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    if k.shape != q.shape:
        raise ValueError(f'neighborhood_qk: q {tuple(q.shape)} and k {tuple(k.shape)} differ')
    if rpb is not None and rpb.shape != (nh, 2 * kh - 1, 2 * kw - 1):
        raise ValueError(f'rpb shape {tuple(rpb.shape)} != {(nh, 2 * kh - 1, 2 * kw - 1)}')
    return torch.ops.zoo.neighborhood_qk(q, k, rpb, kh, kw, dh, dw)


def neighborhood_av_triton(attn: torch.Tensor, v: torch.Tensor, kernel_size, dilation=1) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``)."""
    check_triton_inputs('neighborhood_av', attn, v)
    dtype = compute_dtype(v, attn)
    attn, v = attn.to(dtype), v.to(dtype)
    B, nh, H, W, D = v.shape
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    if attn.shape != (B, nh, H, W, kh * kw):
        raise ValueError(f'attn shape {tuple(attn.shape)} != {(B, nh, H, W, kh * kw)}')
    return torch.ops.zoo.neighborhood_av(attn, v, kh, kw, dh, dw)


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration (only the Triton path goes through the custom ops)

def _blocks(kw: int, D: int):
    # BLOCK_P (pixels per program) and num_warps are autotuned per problem size (zoo.ops._autotune)
    return dict(BLOCK_KW=_triton.next_power_of_2(kw), BLOCK_D=max(16, _triton.next_power_of_2(D)))


def _grid(H: int, W: int, batch_heads: int):
    return lambda meta: (_triton.cdiv(H * W, meta['BLOCK_P']), batch_heads)


def _pair_dot(x, y, rpb, kh, kw, dh, dw):
    B, nh, H, W, D = x.shape
    out = torch.empty((B, nh, H, W, kh * kw), device=x.device, dtype=x.dtype)
    x, y = x.contiguous(), y.contiguous()
    rpb_t = rpb.contiguous() if rpb is not None else x
    grid = _grid(H, W, B * nh)
    _tk.pair_dot_kernel[grid](x, y, rpb_t, out, H, W, nh, D, KH=kh, KW=kw, DH=dh, DW=dw, HAS_RPB=rpb is not None,
                              **_blocks(kw, D))
    return out


def _weighted_sum(w, y, kh, kw, dh, dw):
    B, nh, H, W, D = y.shape
    out = torch.empty_like(y, memory_format=torch.contiguous_format)
    grid = _grid(H, W, B * nh)
    _tk.weighted_sum_kernel[grid](w.contiguous(), y.contiguous(), out, H, W, D, KH=kh, KW=kw, DH=dh, DW=dw,
                                  **_blocks(kw, D))
    return out


def _scatter(w, x, kh, kw, dh, dw):
    B, nh, H, W, D = x.shape
    out = torch.zeros((B, nh, H, W, D), device=x.device, dtype=torch.float32)
    grid = _grid(H, W, B * nh)
    _tk.scatter_kernel[grid](w.contiguous(), x.contiguous(), out, H, W, D, KH=kh, KW=kw, DH=dh, DW=dw,
                             **_blocks(kw, D))
    return out.to(x.dtype)


def _rpb_grad(dattn: torch.Tensor, rpb: torch.Tensor, kh, kw, dh, dw) -> torch.Tensor:
    """Sum the logit gradient into the bias table (size of attn, never times D)."""
    B, nh, H, W, _ = dattn.shape
    _, by = neighbor_tables(H, kh, dh, dattn.device)
    _, bx = neighbor_tables(W, kw, dw, dattn.device)
    idx = (by[:, None, :, None] * (2 * kw - 1) + bx[None, :, None, :]).reshape(-1)
    g = dattn.float().sum(0).reshape(nh, -1)
    out = torch.zeros(nh, (2 * kh - 1) * (2 * kw - 1), device=dattn.device, dtype=torch.float32)
    return out.index_add_(1, idx, g).view_as(rpb).to(rpb.dtype)


if HAS_TRITON:
    # the kernels' module is named triton.py (the house layout); importing it binds the name
    # `triton` in this package to that submodule, so the library is imported as _triton
    import triton as _triton  # noqa: E402,I001

    from . import triton as _tk

    @torch.library.custom_op('zoo::neighborhood_qk', mutates_args=())
    def _nqk(q: torch.Tensor, k: torch.Tensor, rpb: Optional[torch.Tensor], kh: int, kw: int, dh: int,
             dw: int) -> torch.Tensor:
        return _pair_dot(q, k, rpb, kh, kw, dh, dw)

    @_nqk.register_fake
    def _(q, k, rpb, kh, kw, dh, dw):
        return q.new_empty((*q.shape[:4], kh * kw))

    @torch.library.custom_op('zoo::neighborhood_qk_bwd', mutates_args=())
    def _nqk_bwd(dattn: torch.Tensor, q: torch.Tensor, k: torch.Tensor, kh: int, kw: int, dh: int,
                 dw: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return _weighted_sum(dattn, k, kh, kw, dh, dw), _scatter(dattn, q, kh, kw, dh, dw)

    @_nqk_bwd.register_fake
    def _(dattn, q, k, kh, kw, dh, dw):
        return torch.empty_like(q), torch.empty_like(k)

    def _nqk_setup(ctx, inputs, output):
        q, k, rpb, kh, kw, dh, dw = inputs
        ctx.geom = (kh, kw, dh, dw)
        ctx.rpb_meta = rpb
        ctx.save_for_backward(q, k)

    def _nqk_backward(ctx, dattn):
        q, k = ctx.saved_tensors
        dattn = dattn.to(q.dtype).contiguous()
        dq, dk = torch.ops.zoo.neighborhood_qk_bwd(dattn, q, k, *ctx.geom)
        drpb = _rpb_grad(dattn, ctx.rpb_meta, *ctx.geom) if ctx.needs_input_grad[2] else None
        return dq, dk, drpb, None, None, None, None

    _nqk.register_autograd(_nqk_backward, setup_context=_nqk_setup)

    @torch.library.custom_op('zoo::neighborhood_av', mutates_args=())
    def _nav(attn: torch.Tensor, v: torch.Tensor, kh: int, kw: int, dh: int, dw: int) -> torch.Tensor:
        return _weighted_sum(attn, v, kh, kw, dh, dw)

    @_nav.register_fake
    def _(attn, v, kh, kw, dh, dw):
        return torch.empty_like(v)

    @torch.library.custom_op('zoo::neighborhood_av_bwd', mutates_args=())
    def _nav_bwd(dout: torch.Tensor, attn: torch.Tensor, v: torch.Tensor, kh: int, kw: int, dh: int,
                 dw: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return _pair_dot(dout, v, None, kh, kw, dh, dw), _scatter(attn, dout, kh, kw, dh, dw)

    @_nav_bwd.register_fake
    def _(dout, attn, v, kh, kw, dh, dw):
        return torch.empty_like(attn), torch.empty_like(v)

    def _nav_setup(ctx, inputs, output):
        attn, v, kh, kw, dh, dw = inputs
        ctx.geom = (kh, kw, dh, dw)
        ctx.save_for_backward(attn, v)

    def _nav_backward(ctx, dout):
        attn, v = ctx.saved_tensors
        dattn, dv = torch.ops.zoo.neighborhood_av_bwd(dout.to(v.dtype).contiguous(), attn, v, *ctx.geom)
        return dattn, dv, None, None, None, None

    _nav.register_autograd(_nav_backward, setup_context=_nav_setup)
