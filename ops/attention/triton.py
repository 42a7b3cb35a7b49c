"""Triton kernels for biased multi-head attention over many short sequences (forward and backward).

Layout: one program per (query tile, batch*head). Sequences here are short (16-256 tokens:
windows, groups, cascaded heads), so a program walks every key tile with an online softmax
(flash-attention style) and never writes the N x M score matrix in the forward pass.

Backward follows FlashAttention-2: a pre-pass computes delta = rowsum(dO * O); one kernel per
key tile accumulates dK and dV (and, when the bias needs a gradient, writes that tile of
dS, the logit gradient, into an fp32 buffer that the caller reduces over the broadcast batch);
one kernel per query tile accumulates dQ. Every output element is written by exactly one
program: no atomics, so the backward is deterministic.

The bias is read through strides: a broadcast bias (stride 0 over heads) costs no copy, and
batch b reads bias[b % Bb].
"""
import triton
import triton.language as tl

from .._autotune import configs

__all__ = ['attn_fwd_kernel', 'attn_bwd_preprocess_kernel', 'attn_bwd_dkdv_kernel', 'attn_bwd_dq_kernel']


@triton.jit
def _scores(q, k_ptrs, bias_ptrs, offs_m, offs_n, N, M, scale, HAS_BIAS: tl.constexpr, mask_d_k,
            IEEE: tl.constexpr):
    """scale * q @ k^T (+ bias) for one [BLOCK_M, BLOCK_N] tile; out-of-range keys get -inf."""
    k = tl.load(k_ptrs, mask=(offs_n[:, None] < M) & mask_d_k, other=0.0)
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision='ieee')
    else:
        s = tl.dot(q, tl.trans(k))
    s = s * scale
    if HAS_BIAS:
        bias = tl.load(bias_ptrs, mask=(offs_m[:, None] < N) & (offs_n[None, :] < M), other=0.0)
        s += bias.to(tl.float32)
    s = tl.where(offs_n[None, :] < M, s, float('-inf'))
    return s


# short sequences (49-256 tokens): smaller query tiles make more programs and waste less of a ragged tile
@triton.autotune(configs=configs(dict(BLOCK_M=(16, 32, 64), BLOCK_N=(64,), num_warps=(2, 4)),
                                 interpreted=dict(BLOCK_M=64, BLOCK_N=64)),
                 key=['N', 'M', 'D', 'DV', 'HAS_BIAS'])
@triton.jit
def attn_fwd_kernel(
        Q, K, V, BIAS, OUT, LSE,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
        sbb, sbh, sbn, sbm,
        H, N, M, D, DV, BB, scale,
        HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # strided q/k/v views: batch offsets can pass 2^31 at large batches
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :],
                mask=(offs_m[:, None] < N) & mask_d, other=0.0)
    m_i = tl.full([BLOCK_M], float('-inf'), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    bias_base = BIAS + (b % BB) * sbb + h * sbh
    for start_n in range(0, M, BLOCK_N):
        offs_n = start_n + offs_n0
        k_ptrs = K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :]
        bias_ptrs = bias_base + offs_m[:, None] * sbn + offs_n[None, :] * sbm
        s = _scores(q, k_ptrs, bias_ptrs, offs_m, offs_n, N, M, scale, HAS_BIAS, mask_d, IEEE)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_dv[None, :],
                    mask=(offs_n[:, None] < M) & mask_dv, other=0.0)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision='ieee')
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(OUT + b * sob + h * soh + offs_m[:, None] * son + offs_dv[None, :], acc.to(OUT.dtype.element_ty),
             mask=(offs_m[:, None] < N) & mask_dv)
    tl.store(LSE + pid_bh * N + offs_m, m_i + tl.log(l_i), mask=offs_m < N)


@triton.jit
def attn_bwd_preprocess_kernel(OUT, DO, DELTA, N, DV, BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr):
    """delta[bh, n] = sum_d dO * O (both contiguous [B*H, N, DV])."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask = (offs_m[:, None] < N) & (offs_dv[None, :] < DV)
    base = pid_bh * N * DV + offs_m[:, None] * DV + offs_dv[None, :]
    o = tl.load(OUT + base, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + base, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + pid_bh * N + offs_m, tl.sum(o * do, axis=1), mask=offs_m < N)


@triton.jit
def attn_bwd_dkdv_kernel(
        Q, K, V, BIAS, DO, LSE, DELTA, DK, DV_OUT, DS,
        H, N, M, D, DV, BB, scale,
        sbb, sbh, sbn, sbm,
        HAS_BIAS: tl.constexpr, WRITE_DS: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """One program per key tile: dK, dV (and the dS tiles for the bias gradient)."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # strided q/k/v views: batch offsets can pass 2^31 at large batches
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV
    mask_n = offs_n[:, None] < M

    k_ptrs = K + pid_bh * M * D + offs_n[:, None] * D + offs_d[None, :]
    v = tl.load(V + pid_bh * M * DV + offs_n[:, None] * DV + offs_dv[None, :], mask=mask_n & mask_dv, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    bias_base = BIAS + (b % BB) * sbb + h * sbh
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + offs_m0
        mask_m = offs_m < N
        q = tl.load(Q + pid_bh * N * D + offs_m[:, None] * D + offs_d[None, :], mask=mask_m[:, None] & mask_d,
                    other=0.0)
        bias_ptrs = bias_base + offs_m[:, None] * sbn + offs_n[None, :] * sbm
        s = _scores(q, k_ptrs, bias_ptrs, offs_m, offs_n, N, M, scale, HAS_BIAS, mask_d, IEEE)
        lse = tl.load(LSE + pid_bh * N + offs_m, mask=mask_m, other=0.0)
        p = tl.exp(s - lse[:, None])
        p = tl.where(mask_m[:, None], p, 0.0)
        do = tl.load(DO + pid_bh * N * DV + offs_m[:, None] * DV + offs_dv[None, :],
                     mask=mask_m[:, None] & mask_dv, other=0.0)
        delta = tl.load(DELTA + pid_bh * N + offs_m, mask=mask_m, other=0.0)
        if IEEE:
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision='ieee')
            dp = tl.dot(do, tl.trans(v), input_precision='ieee')
        else:
            dv += tl.dot(tl.trans(p.to(do.dtype)), do)
            dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        if WRITE_DS:
            tl.store(DS + pid_bh * N * M + offs_m[:, None] * M + offs_n[None, :], ds,
                     mask=mask_m[:, None] & (offs_n[None, :] < M))
        if IEEE:
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision='ieee')
        else:
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
    tl.store(DK + pid_bh * M * D + offs_n[:, None] * D + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=mask_n & mask_d)
    tl.store(DV_OUT + pid_bh * M * DV + offs_n[:, None] * DV + offs_dv[None, :], dv.to(DV_OUT.dtype.element_ty),
             mask=mask_n & mask_dv)


@triton.jit
def attn_bwd_dq_kernel(
        Q, K, V, BIAS, DO, LSE, DELTA, DQ,
        H, N, M, D, DV, BB, scale,
        sbb, sbh, sbn, sbm,
        HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """One program per query tile: dQ."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # strided q/k/v views: batch offsets can pass 2^31 at large batches
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_d = offs_d[None, :] < D
    mask_dv = offs_dv[None, :] < DV
    mask_m = offs_m < N

    q = tl.load(Q + pid_bh * N * D + offs_m[:, None] * D + offs_d[None, :], mask=mask_m[:, None] & mask_d, other=0.0)
    do = tl.load(DO + pid_bh * N * DV + offs_m[:, None] * DV + offs_dv[None, :], mask=mask_m[:, None] & mask_dv,
                 other=0.0)
    lse = tl.load(LSE + pid_bh * N + offs_m, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + pid_bh * N + offs_m, mask=mask_m, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    bias_base = BIAS + (b % BB) * sbb + h * sbh
    for start_n in range(0, M, BLOCK_N):
        offs_n = start_n + offs_n0
        mask_n = offs_n[:, None] < M
        k_ptrs = K + pid_bh * M * D + offs_n[:, None] * D + offs_d[None, :]
        bias_ptrs = bias_base + offs_m[:, None] * sbn + offs_n[None, :] * sbm
        s = _scores(q, k_ptrs, bias_ptrs, offs_m, offs_n, N, M, scale, HAS_BIAS, mask_d, IEEE)
        p = tl.exp(s - lse[:, None])
        k = tl.load(k_ptrs, mask=mask_n & mask_d, other=0.0)
        v = tl.load(V + pid_bh * M * DV + offs_n[:, None] * DV + offs_dv[None, :], mask=mask_n & mask_dv, other=0.0)
        if IEEE:
            dp = tl.dot(do, tl.trans(v), input_precision='ieee')
        else:
            dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        if IEEE:
            dq += tl.dot(ds.to(k.dtype), k, input_precision='ieee')
        else:
            dq += tl.dot(ds.to(k.dtype), k)
    tl.store(DQ + pid_bh * N * D + offs_m[:, None] * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=mask_m[:, None] & mask_d)
