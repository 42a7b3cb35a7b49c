"""Triton kernels for the all-states N = 1 selective scan (forward and backward).

One program owns BLOCK_D channels of one batch item and walks the sequence in BLOCK_L chunks. Inside a chunk
the first-order recurrence h_t = a_t h_{t-1} + b_t is an inclusive ``tl.associative_scan`` over (a, b) pairs
with (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2); the state entering the chunk is carried in registers. Every
product of decays stays in (0, 1], so nothing overflows (unlike a log-space exp(-cumsum) factorisation).

Backward: the adjoint g^_t = g_t + a_{t+1} g^_{t+1} is the same scan run in reverse (chunks from the end).
Then d b_t = g^_t and d a_t = g^_t h_{t-1} (h from the forward output), chained through a = exp(dt A),
b = dt B u and dt = softplus(delta + bias). Per-channel sums (dA, d bias) and the cross-channel sum (dB) are
written as per-program partials and reduced by the caller, so no atomics are needed.
"""
import triton
import triton.language as tl

__all__ = ['scan_fwd_kernel', 'scan_bwd_kernel']


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(z):
    # threshold 20 as in the CUDA kernel; log(1 + exp(z)) written with tl.* math (no libdevice)
    return tl.where(z > 20., z, tl.log(1. + tl.exp(tl.minimum(z, 20.))))


@triton.jit
def _decay_drive(U, DELTA, Bm, A, bias, offs_d, offs_l, mask, b, D, L, SOFTPLUS: tl.constexpr):
    """dt, a = exp(dt A), b = dt B u for a [BLOCK_D, BLOCK_L] tile (fp32); masked lanes give a = 1, b = 0."""
    idx = b.to(tl.int64) * D * L + offs_d[:, None] * L + offs_l[None, :]
    z = tl.load(DELTA + idx, mask=mask, other=0.).to(tl.float32) + bias[:, None]
    dt = _softplus(z) if SOFTPLUS else z
    u = tl.load(U + idx, mask=mask, other=0.).to(tl.float32)
    bt = tl.load(Bm + b.to(tl.int64) * L + offs_l, mask=offs_l < L, other=0.).to(tl.float32)
    a = tl.where(mask, tl.exp(dt * A[:, None]), 1.)
    drive = tl.where(mask, dt * bt[None, :] * u, 0.)
    return z, dt, u, bt, a, drive, idx


@triton.jit
def scan_fwd_kernel(U, DELTA, A, Bm, BIAS, OUT, D, L, SOFTPLUS: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    A_d = tl.load(A + offs_d, mask=mask_d, other=0.).to(tl.float32)
    bias = tl.load(BIAS + offs_d, mask=mask_d, other=0.).to(tl.float32)
    carry = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for start in range(0, L, BLOCK_L):
        offs_l = start + tl.arange(0, BLOCK_L)
        mask = mask_d[:, None] & (offs_l[None, :] < L)
        z, dt, u, bt, a, drive, idx = _decay_drive(U, DELTA, Bm, A_d, bias, offs_d, offs_l, mask, b, D, L, SOFTPLUS)
        a_cum, h = tl.associative_scan((a, drive), axis=1, combine_fn=_combine)
        h = h + a_cum * carry[:, None]
        tl.store(OUT + idx, h, mask=mask)
        carry = tl.sum(tl.where(offs_l[None, :] == tl.minimum(start + BLOCK_L, L) - 1, h, 0.), axis=1)


@triton.jit
def scan_bwd_kernel(U, DELTA, A, Bm, BIAS, OUT, DOUT, DU, DDELTA, DA_PART, DBIAS_PART, DB_PART, D, L,
                    SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    n_dblk = tl.num_programs(0)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    A_d = tl.load(A + offs_d, mask=mask_d, other=0.).to(tl.float32)
    bias = tl.load(BIAS + offs_d, mask=mask_d, other=0.).to(tl.float32)
    carry = tl.zeros((BLOCK_D,), dtype=tl.float32)      # adjoint entering from the right (g^ at chunk end + 1)
    dA_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    n_chunks = tl.cdiv(L, BLOCK_L)
    for c in range(0, n_chunks):
        start = (n_chunks - 1 - c) * BLOCK_L
        offs_l = start + tl.arange(0, BLOCK_L)
        mask = mask_d[:, None] & (offs_l[None, :] < L)
        z, dt, u, bt, a, drive, idx = _decay_drive(U, DELTA, Bm, A_d, bias, offs_d, offs_l, mask, b, D, L, SOFTPLUS)
        # decay of the next step (a_{t+1}); zero past the end of the sequence
        offs_n = offs_l + 1
        mask_n = mask_d[:, None] & (offs_n[None, :] < L)
        _, _, _, _, a_next, _, _ = _decay_drive(U, DELTA, Bm, A_d, bias, offs_d, offs_n, mask_n, b, D, L, SOFTPLUS)
        a_next = tl.where(mask_n, a_next, 0.)
        g = tl.load(DOUT + idx, mask=mask, other=0.).to(tl.float32)
        a_rc, g_hat = tl.associative_scan((a_next, g), axis=1, combine_fn=_combine, reverse=True)
        # a_rc_t = a_{t+1} ... a_{end+1}: the decay from t to the carry's position (the next chunk's start)
        g_hat = g_hat + a_rc * carry[:, None]
        h_prev = tl.load(OUT + idx - 1, mask=mask & (offs_l[None, :] > 0), other=0.).to(tl.float32)
        d_a = g_hat * h_prev
        d_dt = d_a * a * A_d[:, None] + g_hat * bt[None, :] * u
        dA_acc += tl.sum(d_a * a * dt, axis=1)
        tl.store(DU + idx, g_hat * dt * bt[None, :], mask=mask)
        db = tl.sum(tl.where(mask, g_hat * dt * u, 0.), axis=0)
        tl.store(DB_PART + (b.to(tl.int64) * n_dblk + pid_d) * L + offs_l, db, mask=offs_l < L)
        if SOFTPLUS:
            dz = d_dt * tl.where(z > 20., 1., 1. / (1. + tl.exp(-z)))
        else:
            dz = d_dt
        dz = tl.where(mask, dz, 0.)
        tl.store(DDELTA + idx, dz, mask=mask)
        dbias_acc += tl.sum(dz, axis=1)
        carry = tl.sum(tl.where(offs_l[None, :] == start, g_hat, 0.), axis=1)
    tl.store(DA_PART + b.to(tl.int64) * D + offs_d, dA_acc, mask=mask_d)
    tl.store(DBIAS_PART + b.to(tl.int64) * D + offs_d, dbias_acc, mask=mask_d)
