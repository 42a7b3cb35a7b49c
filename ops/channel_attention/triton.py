"""Triton kernels for DaViT's channel attention (forward and backward).

With A = softmax(scale * k^T v) (d x d per batch*head) and out = q A^T, the work splits into
reductions over the N tokens into a d x d matrix and token-parallel products with it:

* ``chattn_map_kernel`` (one program per batch*head): S = sum over token tiles of k_tile^T v_tile,
  A = softmax(scale * S) row-wise, stored fp32 (d x d: tiny).
* ``chattn_out_kernel`` (one program per token tile and batch*head): out_tile = q_tile A^T.
* ``chattn_bwd_map_kernel`` (per batch*head): dA = sum over tiles of dout_tile^T q_tile, then the softmax
  gradient dS = scale * A * (dA - rowsum(dA * A)), stored fp32.
* ``chattn_bwd_tokens_kernel`` (per token tile and batch*head): dq = dout A, dk = v dS^T, dv = k dS.

Every output is written by one program (the reductions over N stay inside one program): no atomics,
deterministic. The attention op's kernels cannot serve here: seen as ordinary attention the head
dimension would be N (thousands of tokens), far beyond one tile.
"""
import triton
import triton.language as tl

__all__ = ['chattn_map_kernel', 'chattn_out_kernel', 'chattn_bwd_map_kernel', 'chattn_bwd_tokens_kernel']


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision='ieee')
    return tl.dot(a, b)


@triton.jit
def _load_tile(ptr, sb, sh, sn, b, h, offs_n, offs_d, N, D):
    return tl.load(ptr + b * sb + h * sh + offs_n[:, None] * sn + offs_d[None, :],
                   mask=(offs_n[:, None] < N) & (offs_d[None, :] < D), other=0.0)


@triton.jit
def chattn_map_kernel(K, V, A, skb, skh, skn, svb, svh, svn, H, N, D, scale,
                      IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    b, h = pid // H, pid % H
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    s = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        offs_n = start + offs_n0
        k = _load_tile(K, skb, skh, skn, b, h, offs_n, offs_d, N, D)
        v = _load_tile(V, svb, svh, svn, b, h, offs_n, offs_d, N, D)
        s += _dot(tl.trans(k), v, IEEE)
    s = tl.where(offs_d[None, :] < D, s * scale, float('-inf'))
    p = tl.exp(s - tl.max(s, axis=1)[:, None])
    p = p / tl.sum(p, axis=1)[:, None]
    mask = (offs_d[:, None] < D) & (offs_d[None, :] < D)
    tl.store(A + pid * D * D + offs_d[:, None] * D + offs_d[None, :], p, mask=mask)


@triton.jit
def _load_map(A, pid, offs_d, D):
    mask = (offs_d[:, None] < D) & (offs_d[None, :] < D)
    return tl.load(A + pid * D * D + offs_d[:, None] * D + offs_d[None, :], mask=mask, other=0.0)


@triton.jit
def chattn_out_kernel(Q, A, OUT, sqb, sqh, sqn, H, N, D,
                      IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_n, pid = tl.program_id(0), tl.program_id(1)
    b, h = pid // H, pid % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load_tile(Q, sqb, sqh, sqn, b, h, offs_n, offs_d, N, D)
    attn = _load_map(A, pid, offs_d, D).to(q.dtype)
    out = _dot(q, tl.trans(attn), IEEE)
    tl.store(OUT + pid * N * D + offs_n[:, None] * D + offs_d[None, :], out.to(OUT.dtype.element_ty),
             mask=(offs_n[:, None] < N) & (offs_d[None, :] < D))


@triton.jit
def chattn_bwd_map_kernel(DO, Q, A, DS, sqb, sqh, sqn, H, N, D, scale,
                          IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    b, h = pid // H, pid % H
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    da = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        offs_n = start + offs_n0
        do = _load_tile(DO, N * D * H, N * D, D, b, h, offs_n, offs_d, N, D)
        q = _load_tile(Q, sqb, sqh, sqn, b, h, offs_n, offs_d, N, D)
        da += _dot(tl.trans(do), q, IEEE)
    attn = _load_map(A, pid, offs_d, D)
    ds = attn * (da - tl.sum(da * attn, axis=1)[:, None]) * scale
    mask = (offs_d[:, None] < D) & (offs_d[None, :] < D)
    tl.store(DS + pid * D * D + offs_d[:, None] * D + offs_d[None, :], ds, mask=mask)


@triton.jit
def chattn_bwd_tokens_kernel(DO, Q, K, V, A, DS, DQ, DK, DV,
                             sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, H, N, D,
                             IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_n, pid = tl.program_id(0), tl.program_id(1)
    b, h = pid // H, pid % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    do = _load_tile(DO, N * D * H, N * D, D, b, h, offs_n, offs_d, N, D)
    k = _load_tile(K, skb, skh, skn, b, h, offs_n, offs_d, N, D)
    v = _load_tile(V, svb, svh, svn, b, h, offs_n, offs_d, N, D)
    attn = _load_map(A, pid, offs_d, D).to(do.dtype)
    ds = _load_map(DS, pid, offs_d, D).to(do.dtype)
    dq = _dot(do, attn, IEEE)
    dk = _dot(v, tl.trans(ds), IEEE)
    dv = _dot(k, ds, IEEE)
    out_off = pid * N * D + offs_n[:, None] * D + offs_d[None, :]
    mask = (offs_n[:, None] < N) & (offs_d[None, :] < D)
    tl.store(DQ + out_off, dq.to(DQ.dtype.element_ty), mask=mask)
    tl.store(DK + out_off, dk.to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + out_off, dv.to(DV.dtype.element_ty), mask=mask)
