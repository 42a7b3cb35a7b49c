"""2-D neighborhood aggregation with NATTEN 0.17 semantics: the readable specification.

    neighborhood_qk(q, k, kernel_size, dilation=1, rpb=None) -> attn   [B, heads, H, W, kh*kw]
    neighborhood_av(attn, v, kernel_size, dilation=1)         -> out    [B, heads, H, W, D]

q, k, v: [B, heads, H, W, D]; rpb: [heads, 2*kh - 1, 2*kw - 1]. Taps are row-major (t = a*kw + e).
Per axis of length L, odd kernel k = 2r + 1 and dilation d, query i belongs to residue class
rho = i mod d at class position p = i // d; the class has L_rho = ceil((L - rho) / d) positions. Its
window starts at s = clamp(p - r, 0, L_rho - k) (windows slide inward at borders, nothing is padded),
neighbour t is (s + t)*d + rho and its bias index is s + t - p + k - 1. Every axis needs L >= k*d.

The ops neither scale nor softmax. Three equal formulations:

- tap loop (eager problems too large for the tiled form): walks the kh*kw taps; for each it gathers one shifted
  copy of k / v (two ``index_select``, separable per axis), so the working set is O(B*heads*H*W*D), never the
  k*k-expanded neighbour tensor -- but it is 2-3 ops per tap, i.e. ~500 graph nodes per call at kernel 13.
- one gather (export / compile): one ``index_select`` with a flat [H*W*kh*kw] neighbour table builds the
  expanded [B, heads, H, W, kh*kw, D] tensor and one batched matmul contracts it. A constant handful of graph
  nodes whatever the kernel size: the tap loop made OverLoCK's and A2Mamba's exported graphs so large that the
  ONNX exporter's optimiser ran for over 15 minutes.
- tiled (every other eager problem; :mod:`.tiled`): dense matrix products over tiles of pixels that share a
  small key block. Measured on CPU, one thread, it is 3-15x faster than both others at every map, kernel and
  dilation OverLoCK and A2Mamba use (7x7 to 56x56, kernels 5-13), since it copies O(map) rows, not O(k*k*map).
"""
from typing import Optional, Sequence, Tuple, Union

import torch

from .._dispatch import in_graph_capture
from .tiled import neighborhood_av_tiled, neighborhood_qk_tiled, tiled_score_elements

__all__ = [
    'neighborhood_qk_reference', 'neighborhood_av_reference', 'neighbor_tables', 'gather_rpb', 'pair',
    'check_neighborhood',
]

# eager problems whose tiled score matrices would exceed this many elements (1 GiB in fp32: e.g. detection-size
# maps at large batch) take the tap loop, whose working set is a few copies of the map
TILED_MAX_ELEMENTS = 1 << 28

IntPair = Union[int, Sequence[int]]


def _as_int(v):
    # a symbolic size (torch.export / torch.compile, e.g. A2Mamba's size-dependent dilation) stays symbolic:
    # int() on it would bake the example's value into the graph
    return v if isinstance(v, torch.SymInt) else int(v)


def pair(x: IntPair) -> Tuple[int, int]:
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f'expected an int or a pair, got {x!r}')
        return _as_int(x[0]), _as_int(x[1])
    return _as_int(x), _as_int(x)


def check_neighborhood(H: int, W: int, kernel_size: IntPair,
                       dilation: IntPair) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    ks, dil = pair(kernel_size), pair(dilation)
    for name, L, k, d in (('height', H, ks[0], dil[0]), ('width', W, ks[1], dil[1])):
        if k < 1 or k % 2 == 0:
            raise ValueError(f'neighborhood kernel size must be odd and positive, got {k}')
        if d < 1:
            raise ValueError(f'neighborhood dilation must be >= 1, got {d}')
        if L < k * d:
            raise ValueError(f'neighborhood: map {name} {L} is smaller than kernel_size*dilation = {k}*{d}')
    return ks, dil


def neighbor_tables(L: int, k: int, d: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Integer tables [L, k]: the neighbour index and the relative-position-bias index of every tap."""
    i = torch.arange(L, device=device)
    t = torch.arange(k, device=device)
    if isinstance(d, int) and d == 1:
        # one residue class: fewer ops, which matters in exported graphs (a table per call and axis)
        start = torch.clamp(i - k // 2, min=0).clamp(max=L - k)
        return start[:, None] + t, (start - i + (k - 1))[:, None] + t
    if isinstance(d, torch.SymInt):
        # a size-dependent dilation under export (A2Mamba): the ONNX exporter cannot take a symbolic Python
        # scalar as an operand of % and //, a 0-d tensor it can
        d = torch.full((), d, dtype=i.dtype, device=device)
    rho, p = i % d, torch.div(i, d, rounding_mode='floor')
    class_len = torch.div(L - rho + d - 1, d, rounding_mode='floor')
    start = torch.minimum(torch.clamp(p - k // 2, min=0), class_len - k)
    nbr = (start[:, None] + t[None, :]) * d + rho[:, None]
    bias = start[:, None] + t[None, :] - p[:, None] + (k - 1)
    return nbr, bias


def flat_neighbor_index(ny: torch.Tensor, nx: torch.Tensor) -> torch.Tensor:
    """Per-axis neighbour tables [H, kh], [W, kw] -> [H*W*kh*kw] indices into the flattened H*W map
    (pixel-major, then taps row-major)."""
    return (ny[:, None, :, None] * nx.shape[0] + nx[None, :, None, :]).reshape(-1)


def _gathered(x: torch.Tensor, ny: torch.Tensor, nx: torch.Tensor) -> torch.Tensor:
    """Every pixel's neighbours of x [B, h, H, W, D] as one tensor [B, h, H, W, kh*kw, D]."""
    H, W = x.shape[2], x.shape[3]
    index = flat_neighbor_index(ny, nx)
    return x.flatten(2, 3).index_select(2, index).unflatten(2, (H, W, ny.shape[1] * nx.shape[1]))


def gather_rpb(rpb: torch.Tensor, by: torch.Tensor, bx: torch.Tensor) -> torch.Tensor:
    """The bias every pixel adds to every tap, [heads, H, W, kh*kw], from the per-axis bias-index tables."""
    H, kh, W, kw = by.shape[0], by.shape[1], bx.shape[0], bx.shape[1]
    if in_graph_capture():  # the exported graphs keep the form they were measured with
        return rpb[:, by[:, None, :, None], bx[None, :, None, :]].reshape(rpb.shape[0], H, W, kh * kw)
    # eager: one index_select on the flattened table, the same values 4-8x faster on CPU
    flat = (by[:, None, :, None] * rpb.shape[-1] + bx[None, :, None, :]).reshape(-1)
    return rpb.flatten(1).index_select(1, flat).reshape(rpb.shape[0], H, W, kh * kw)


def _formulation(x: torch.Tensor, kh: int, kw: int, dh: int, dw: int) -> str:
    """'gather' under graph capture, else 'tiled', or 'tap_loop' where the tiled matrices would be too large."""
    if in_graph_capture():
        return 'gather'
    B, nh, H, W = x.shape[:4]
    return 'tiled' if tiled_score_elements(B, nh, H, W, kh, kw, dh, dw) <= TILED_MAX_ELEMENTS else 'tap_loop'


def neighborhood_qk_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        kernel_size: IntPair,
        dilation: IntPair = 1,
        rpb: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    B, nh, H, W, D = q.shape
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    ny, by = neighbor_tables(H, kh, dh, q.device)
    nx, bx = neighbor_tables(W, kw, dw, q.device)
    form = _formulation(k, kh, kw, dh, dw)
    if form == 'tiled':
        attn = neighborhood_qk_tiled(q, k, kh, kw, dh, dw)
    elif form == 'gather':
        attn = (q.unsqueeze(-2) @ _gathered(k, ny, nx).transpose(-1, -2)).squeeze(-2)
    else:
        taps = []
        for a in range(kh):
            k_row = k.index_select(2, ny[:, a])  # row a of every pixel's window: [B, h, H, W, D]
            for e in range(kw):
                taps.append(torch.linalg.vecdot(k_row.index_select(3, nx[:, e]), q))
        attn = torch.stack(taps, dim=-1)
    if rpb is not None:
        if rpb.shape != (nh, 2 * kh - 1, 2 * kw - 1):
            raise ValueError(f'rpb shape {tuple(rpb.shape)} != {(nh, 2 * kh - 1, 2 * kw - 1)}')
        attn = attn + gather_rpb(rpb, by, bx).to(attn.dtype)
    return attn


def neighborhood_av_reference(
        attn: torch.Tensor,
        v: torch.Tensor,
        kernel_size: IntPair,
        dilation: IntPair = 1,
) -> torch.Tensor:
    B, nh, H, W, D = v.shape
    (kh, kw), (dh, dw) = check_neighborhood(H, W, kernel_size, dilation)
    if attn.shape != (B, nh, H, W, kh * kw):
        raise ValueError(f'attn shape {tuple(attn.shape)} != {(B, nh, H, W, kh * kw)}')
    ny, _ = neighbor_tables(H, kh, dh, v.device)
    nx, _ = neighbor_tables(W, kw, dw, v.device)
    form = _formulation(v, kh, kw, dh, dw)
    if form == 'tiled':
        return neighborhood_av_tiled(attn, v, kh, kw, dh, dw)
    if form == 'gather':
        return (attn.unsqueeze(-2) @ _gathered(v, ny, nx)).squeeze(-2)
    out = torch.zeros_like(v)
    for a in range(kh):
        v_row = v.index_select(2, ny[:, a])  # row a of every pixel's window: [B, h, H, W, D]
        for e in range(kw):
            out = torch.addcmul(out, attn[..., a * kw + e, None], v_row.index_select(3, nx[:, e]))
    return out
