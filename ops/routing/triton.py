"""Triton kernels for routed (bi-level routing) attention, forward and backward, gather-free.

Layout: q, k, v contiguous [B, H, R, T, D] (R regions of T tokens), routing indices idx [B, R, topk] (int32).
The official formulation gathers the routed key/value regions into a topk-fold copy; here the kernels read
each routed region's tile straight from the un-gathered k / v at ``region * T`` through the index.

* Forward: one program per (query region, query tile, batch*head); it walks the routed key sequence (topk * T
  tokens) with an online softmax and stores O and the log-sum-exp. A key tile is packed across routed regions:
  row j of the sequence is token j % T of region idx[j // T], so small regions (2x2 tokens in BiFormer's stage 3,
  topk 16) fill whole tiles instead of wasting most of one tile per region.
* dQ: the same walk, with dS = P * (dP - delta).
* dK / dV: one program per (key region, key tile, batch*head). A key region receives gradient from every query
  region that routed to it; the launcher inverts the routing table into a CSR list per key region (a stable
  sort, computed in torch), and each program walks the packed sequence of exactly those query regions' tokens.
  Every output element is written by one program: no atomics, deterministic.
"""
import triton
import triton.language as tl

__all__ = ['routed_fwd_kernel', 'routed_bwd_dq_kernel', 'routed_bwd_dkdv_kernel']


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision='ieee')
    return tl.dot(a, b)


@triton.jit
def _routed_rows(REGIONS, offs, mask, T):
    """Rows (region * T + token) of a packed routed sequence: entry j is token j % T of region REGIONS[j // T]."""
    region = tl.load(REGIONS + offs // T, mask=mask, other=0).to(tl.int64)
    return region * T + offs % T


@triton.jit
def routed_fwd_kernel(
        Q, K, V, IDX, OUT, LSE,
        H, R, T, D, DV, TOPK, NUM_M_TILES, scale,
        IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    r = pid // NUM_M_TILES
    b = pid_bh // H
    offs_m = (pid % NUM_M_TILES) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_m = offs_m < T
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV
    q_base = Q + pid_bh * R * T * D
    k_base = K + pid_bh * R * T * D
    v_base = V + pid_bh * R * T * DV

    q = tl.load(q_base + (r * T + offs_m[:, None]) * D + offs_d[None, :], mask=mask_m[:, None] & mask_d, other=0.0)
    m_i = tl.full([BLOCK_M], float('-inf'), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    num_keys = TOPK * T
    for start_n in range(0, num_keys, BLOCK_N):
        offs_n = start_n + offs_n0
        mask_n = offs_n < num_keys
        rows = _routed_rows(IDX + (b * R + r) * TOPK, offs_n, mask_n, T)
        k = tl.load(k_base + rows[:, None] * D + offs_d[None, :], mask=mask_n[:, None] & mask_d, other=0.0)
        s = _dot(q, tl.trans(k), IEEE) * scale
        s = tl.where(mask_n[None, :], s, float('-inf'))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + rows[:, None] * DV + offs_dv[None, :], mask=mask_n[:, None] & mask_dv, other=0.0)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(OUT + pid_bh * R * T * DV + (r * T + offs_m[:, None]) * DV + offs_dv[None, :],
             acc.to(OUT.dtype.element_ty), mask=mask_m[:, None] & mask_dv)
    tl.store(LSE + pid_bh * R * T + r * T + offs_m, m_i + tl.log(l_i), mask=mask_m)


@triton.jit
def routed_bwd_dq_kernel(
        Q, K, V, IDX, DO, LSE, DELTA, DQ,
        H, R, T, D, DV, TOPK, NUM_M_TILES, scale,
        IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """One program per (query region, query tile, batch*head): dQ over the routed key regions."""
    pid = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    r = pid // NUM_M_TILES
    b = pid_bh // H
    offs_m = (pid % NUM_M_TILES) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_m = offs_m < T
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV
    q_base = Q + pid_bh * R * T * D
    k_base = K + pid_bh * R * T * D
    v_base = V + pid_bh * R * T * DV
    rows_q = r * T + offs_m

    q = tl.load(q_base + rows_q[:, None] * D + offs_d[None, :], mask=mask_m[:, None] & mask_d, other=0.0)
    do = tl.load(DO + pid_bh * R * T * DV + rows_q[:, None] * DV + offs_dv[None, :],
                 mask=mask_m[:, None] & mask_dv, other=0.0)
    lse = tl.load(LSE + pid_bh * R * T + rows_q, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + pid_bh * R * T + rows_q, mask=mask_m, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    num_keys = TOPK * T
    for start_n in range(0, num_keys, BLOCK_N):
        offs_n = start_n + offs_n0
        mask_n = offs_n < num_keys
        rows = _routed_rows(IDX + (b * R + r) * TOPK, offs_n, mask_n, T)
        k = tl.load(k_base + rows[:, None] * D + offs_d[None, :], mask=mask_n[:, None] & mask_d, other=0.0)
        v = tl.load(v_base + rows[:, None] * DV + offs_dv[None, :], mask=mask_n[:, None] & mask_dv, other=0.0)
        s = _dot(q, tl.trans(k), IEEE) * scale
        p = tl.exp(s - lse[:, None])
        p = tl.where(mask_n[None, :], p, 0.0)
        dp = _dot(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, IEEE)
    tl.store(DQ + pid_bh * R * T * D + rows_q[:, None] * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=mask_m[:, None] & mask_d)


@triton.jit
def routed_bwd_dkdv_kernel(
        Q, K, V, INV_PTR, INV_Q, DO, LSE, DELTA, DK, DV_OUT,
        H, R, T, D, DV, TOPK, NUM_N_TILES, scale,
        IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """One program per (key region, key tile, batch*head): dK, dV from every query region routed here."""
    pid = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    region = pid // NUM_N_TILES
    b = pid_bh // H
    offs_n = (pid % NUM_N_TILES) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_n = offs_n < T
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV
    q_base = Q + pid_bh * R * T * D
    do_base = DO + pid_bh * R * T * DV
    rows_k = region * T + offs_n

    k = tl.load(K + pid_bh * R * T * D + rows_k[:, None] * D + offs_d[None, :], mask=mask_n[:, None] & mask_d,
                other=0.0)
    v = tl.load(V + pid_bh * R * T * DV + rows_k[:, None] * DV + offs_dv[None, :], mask=mask_n[:, None] & mask_dv,
                other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    start = tl.load(INV_PTR + b * (R + 1) + region)
    end = tl.load(INV_PTR + b * (R + 1) + region + 1)
    num_queries = (end - start) * T  # the tokens of every query region routed here, packed like the keys above
    for start_m in range(0, num_queries, BLOCK_M):
        offs_m = start_m + offs_m0
        mask_m = offs_m < num_queries
        rows_q = _routed_rows(INV_Q + b * R * TOPK + start, offs_m, mask_m, T)
        q = tl.load(q_base + rows_q[:, None] * D + offs_d[None, :], mask=mask_m[:, None] & mask_d, other=0.0)
        do = tl.load(do_base + rows_q[:, None] * DV + offs_dv[None, :], mask=mask_m[:, None] & mask_dv, other=0.0)
        lse = tl.load(LSE + pid_bh * R * T + rows_q, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + pid_bh * R * T + rows_q, mask=mask_m, other=0.0)
        s = _dot(q, tl.trans(k), IEEE) * scale
        p = tl.exp(s - lse[:, None])
        p = tl.where(mask_m[:, None], p, 0.0)
        dv += _dot(tl.trans(p.to(do.dtype)), do, IEEE)
        dp = _dot(do, tl.trans(v), IEEE)
        ds = p * (dp - delta[:, None])
        dk += _dot(tl.trans(ds.to(q.dtype)), q, IEEE)
    tl.store(DK + pid_bh * R * T * D + rows_k[:, None] * D + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=mask_n[:, None] & mask_d)
    tl.store(DV_OUT + pid_bh * R * T * DV + rows_k[:, None] * DV + offs_dv[None, :], dv.to(DV_OUT.dtype.element_ty),
             mask=mask_n[:, None] & mask_dv)
