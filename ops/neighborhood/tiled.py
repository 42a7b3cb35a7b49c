"""The neighborhood ops as dense matrix products over tiles: the fast eager CPU form of the reference.

Gathering every pixel's k*k neighbours (the one-gather form) copies rows of D numbers one by one, k*k times the
map: at OverLoCK's and A2Mamba's sizes that copy, not arithmetic, is the time. Here the map is cut into tiles of
query pixels that share a small key block, and each tile is one dense matrix product:

- per axis and dilation residue class (dilation d splits an axis into d independent dilation-1 classes), class
  positions are chunked into runs of T queries; the union of their windows is a run of at most T + k - 1 class
  positions (windows only slide inward, never jump), its key run. Small classes are one run (the dense limit).
- a 2-D tile is a row run x a column run: queries [Tq] and keys [M] index the flattened map, and every tap of
  every query has a local slot in the tile's keys (``local``).
- qk: S = Q_tile K_tile^T per tile, then each query's taps are read out of S at their local slots.
  av: the weights are written into a zero [Tq, M] matrix at the same slots and multiplied with V_tile.
- a permutation takes the tile slots back to pixel order.

The products sum in another order than the specification's, so results agree to float rounding. Tables depend
only on the geometry and are cached (eager only: the reference uses the one-gather form under graph capture).
"""
import functools
from typing import List, Tuple

import torch

# the module, not the name: reference imports this module while it is itself being imported
from . import reference as _reference

__all__ = ['neighborhood_qk_tiled', 'neighborhood_av_tiled', 'tile_tables', 'tiled_score_elements']


def _axis_runs(L: int, k: int, d: int) -> Tuple[List[List[int]], List[List[int]], List[List[List[int]]]]:
    """Per axis: runs of queries (global positions), their key runs, and each query's taps as key-run slots."""
    nbr = _reference.neighbor_tables(L, k, d)[0].tolist()
    queries, keys, local = [], [], []
    for rho in range(d):
        members = list(range(rho, L, d))
        n = len(members)
        # one run when the class is at most two windows long (dense); else runs of ~k queries, balanced
        runs = 1 if n <= 2 * k - 1 else -(-n // k)
        size = -(-n // runs)
        for c in range(0, n, size):
            qs = members[c:c + size]
            first, last = nbr[qs[0]][0], nbr[qs[-1]][-1]
            ks = list(range(first, last + 1, d))
            queries.append(qs)
            keys.append(ks)
            local.append([[(p - first) // d for p in nbr[i]] for i in qs])
    return queries, keys, local


def _padded(rows: List[list], width: int) -> List[list]:
    # a ragged run is padded with its last entry: padded queries are computed and never read back, padded keys
    # are never the slot of a tap
    return [r + [r[-1]] * (width - len(r)) for r in rows]


def _tables_cpu(H: int, W: int, kh: int, kw: int, dh: int, dw: int):
    # cached tables must be plain tensors even when first built inside inference_mode: an inference tensor cannot
    # be saved for backward by a later differentiable call
    with torch.inference_mode(False):
        return _build_tables(H, W, kh, kw, dh, dw)


@functools.lru_cache(maxsize=64)
def _build_tables(H: int, W: int, kh: int, kw: int, dh: int, dw: int):
    qy, ky, ly = _axis_runs(H, kh, dh)
    qx, kx, lx = _axis_runs(W, kw, dw)
    tqy, tqx = max(map(len, qy)), max(map(len, qx))
    my, mx = max(map(len, ky)), max(map(len, kx))
    qy_t, qx_t = torch.tensor(_padded(qy, tqy)), torch.tensor(_padded(qx, tqx))        # [ny, tqy], [nx, tqx]
    ky_t, kx_t = torch.tensor(_padded(ky, my)), torch.tensor(_padded(kx, mx))          # [ny, my], [nx, mx]
    ly_t = torch.tensor(_padded(ly, tqy))                                               # [ny, tqy, kh]
    lx_t = torch.tensor(_padded(lx, tqx))                                               # [nx, tqx, kw]
    ny, nx = qy_t.shape[0], qx_t.shape[0]
    # tile (ry, rx), query slot (sy, sx), key slot (my, mx), tap (a, e): row-major everywhere
    query_pix = (qy_t[:, None, :, None] * W + qx_t[None, :, None, :]).reshape(ny * nx, tqy * tqx)
    key_pix = (ky_t[:, None, :, None] * W + kx_t[None, :, None, :]).reshape(ny * nx, my * mx)
    local = (ly_t[:, None, :, None, :, None] * mx + lx_t[None, :, None, :, None, :])
    local = local.reshape(ny * nx, tqy * tqx, kh * kw)
    # pixel -> flat tile slot (each pixel is a real query of exactly one tile)
    slot = torch.empty(H * W, dtype=torch.long)
    for ry, qs_y in enumerate(qy):
        for rx, qs_x in enumerate(qx):
            rows = torch.tensor(qs_y)[:, None] * W + torch.tensor(qs_x)[None, :]
            base = (ry * nx + rx) * tqy * tqx
            slot[rows.reshape(-1)] = (base + torch.arange(len(qs_y))[:, None] * tqx
                                      + torch.arange(len(qs_x))[None, :]).reshape(-1)
    return query_pix, key_pix, local, slot


def tiled_score_elements(B: int, heads: int, H: int, W: int, kh: int, kw: int, dh: int, dw: int) -> int:
    """Elements of the per-tile score / weight matrices [B, heads, tiles, Tq, M] (the form's largest tensor)."""
    query_pix, key_pix = _tables_cpu(H, W, kh, kw, dh, dw)[:2]
    return B * heads * query_pix.numel() * key_pix.shape[-1]


def tile_tables(H: int, W: int, kh: int, kw: int, dh: int, dw: int, device=None):
    """(query_pix [tiles, Tq], key_pix [tiles, M], local [tiles, Tq, kh*kw], slot [H*W]) for the geometry."""
    return tuple(t.to(device) for t in _tables_cpu(H, W, kh, kw, dh, dw))


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, h, N, C] -> x[:, :, index]: one row copy per index over the flattened batch (the fast 2-D path)."""
    B, h, N, C = x.shape
    offsets = (torch.arange(B * h, device=x.device) * N)[:, None]
    flat = torch.nn.functional.embedding(offsets + index.reshape(1, -1), x.reshape(B * h * N, C))
    return flat.reshape(B, h, *index.shape, C)


def neighborhood_qk_tiled(q: torch.Tensor, k: torch.Tensor, kh: int, kw: int, dh: int, dw: int) -> torch.Tensor:
    """q . k over each neighborhood ([B, h, H, W, kh*kw], no bias); geometry already checked."""
    B, nh, H, W, D = q.shape
    query_pix, key_pix, local, slot = tile_tables(H, W, kh, kw, dh, dw, q.device)
    qt = _rows(q.reshape(B, nh, H * W, D), query_pix)                   # [B, h, tiles, Tq, D]
    kt = _rows(k.reshape(B, nh, H * W, D), key_pix)                     # [B, h, tiles, M, D]
    scores = torch.matmul(qt, kt.transpose(-1, -2))                     # [B, h, tiles, Tq, M]
    attn = scores.gather(-1, local.expand(B, nh, *local.shape))        # [B, h, tiles, Tq, kh*kw]
    # flatten, not reshape(..., -1, ...): a batch of 0 has no size to infer
    return _rows(attn.flatten(2, 3), slot).reshape(B, nh, H, W, kh * kw)


def neighborhood_av_tiled(attn: torch.Tensor, v: torch.Tensor, kh: int, kw: int, dh: int, dw: int) -> torch.Tensor:
    """Weights . values over each neighborhood ([B, h, H, W, D]); geometry already checked."""
    B, nh, H, W, D = v.shape
    query_pix, key_pix, local, slot = tile_tables(H, W, kh, kw, dh, dw, v.device)
    at = _rows(attn.reshape(B, nh, H * W, kh * kw), query_pix)          # [B, h, tiles, Tq, kh*kw]
    weights = at.new_zeros(*at.shape[:-1], key_pix.shape[-1]).scatter_(-1, local.expand(B, nh, *local.shape), at)
    vt = _rows(v.reshape(B, nh, H * W, D), key_pix)                     # [B, h, tiles, M, D]
    out = torch.matmul(weights, vt)                                     # [B, h, tiles, Tq, D]
    return _rows(out.flatten(2, 3), slot).reshape(B, nh, H, W, D)
