"""Triton kernels for 2-D neighborhood aggregation (NATTEN 0.17 rules), forward and backward.

One program handles BLOCK_P pixels of one (batch, head) and walks the kh kernel rows, each row's kw taps
as one [BLOCK_P, BLOCK_KW, BLOCK_D] tile; each tap's neighbour
(and bias index) is computed in-kernel from the pixel coordinates with the clamp rule of
:mod:`.reference`, so nothing k*k-expanded is ever written:

* ``pair_dot_kernel``:     out[p, t] = <x[p], y[n_t(p)]> (+ rpb)      -- qk forward, d(attn) of av
* ``weighted_sum_kernel``: out[p]    = sum_t w[p, t] * y[n_t(p)]      -- av forward, dq of qk
* ``scatter_kernel``:      out[n_t(p)] += w[p, t] * x[p] (atomics)    -- dv of av, dk of qk

The scatter is the transpose of the gather; it accumulates in fp32 with atomics (not bit-deterministic
across runs, as with most scatter backward passes).
"""
import triton
import triton.language as tl

from .._autotune import configs

__all__ = ['pair_dot_kernel', 'weighted_sum_kernel', 'scatter_kernel']


@triton.jit
def _window(i, L, K: tl.constexpr, DIL: tl.constexpr):
    """(window start in class coordinates, class position, residue) for positions i of an axis of length L."""
    rho = i % DIL
    pc = i // DIL
    class_len = (L - rho + DIL - 1) // DIL
    start = tl.minimum(tl.maximum(pc - K // 2, 0), class_len - K)
    return start, pc, rho


@triton.jit
def _setup(pid_p, H, W, D, KH: tl.constexpr, KW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
           BLOCK_P: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pixel offsets, masks and per-axis window data shared by the three kernels."""
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_e = tl.arange(0, BLOCK_KW)
    offs_d = tl.arange(0, BLOCK_D)
    mask_p = offs_p < H * W
    mask_pe = mask_p[:, None] & (offs_e[None, :] < KW)
    mask_ped = mask_pe[:, :, None] & (offs_d[None, None, :] < D)
    i = offs_p // W
    j = offs_p % W
    sy, py, ry = _window(i, H, KH, DH)
    sx, px, rx = _window(j, W, KW, DW)
    nj = (sx[:, None] + offs_e[None, :]) * DW + rx[:, None]          # [P, KW] neighbour columns
    bx = sx[:, None] + offs_e[None, :] - px[:, None] + KW - 1        # [P, KW] bias columns
    return offs_p, offs_e, offs_d, mask_p, mask_pe, mask_ped, sy, py, ry, nj, bx


@triton.autotune(configs=configs(dict(BLOCK_P=(16, 32, 64), num_warps=(2, 4)), interpreted=dict(BLOCK_P=128)),
                 key=['H', 'W', 'D', 'KH', 'KW', 'DH', 'DW'])
@triton.jit
def pair_dot_kernel(X, Y, RPB, OUT, H, W, NH, D,
                    KH: tl.constexpr, KW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr, HAS_RPB: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_p, offs_e, offs_d, mask_p, mask_pe, mask_ped, sy, py, ry, nj, bx = _setup(
        pid_p, H, W, D, KH, KW, DH, DW, BLOCK_P, BLOCK_KW, BLOCK_D)
    HW = H * W
    base = pid_bh.to(tl.int64) * HW * D
    x = tl.load(X + base + offs_p[:, None] * D + offs_d[None, :],
                mask=mask_p[:, None] & (offs_d[None, :] < D), other=0.).to(tl.float32)
    out_ptrs = OUT + pid_bh.to(tl.int64) * HW * (KH * KW) + offs_p[:, None] * (KH * KW) + offs_e[None, :]
    rpb_base = RPB + (pid_bh % NH) * (2 * KH - 1) * (2 * KW - 1)
    for a in range(KH):
        ni = (sy + a) * DH + ry                                             # [P]
        nbr = ni[:, None] * W + nj                                          # [P, KW]
        y = tl.load(Y + base + nbr[:, :, None] * D + offs_d[None, None, :], mask=mask_ped, other=0.).to(tl.float32)
        s = tl.sum(x[:, None, :] * y, axis=2)                               # [P, KW]
        if HAS_RPB:
            by = sy + a - py + KH - 1
            s += tl.load(rpb_base + by[:, None] * (2 * KW - 1) + bx, mask=mask_pe, other=0.).to(tl.float32)
        tl.store(out_ptrs + a * KW, s.to(OUT.dtype.element_ty), mask=mask_pe)


@triton.autotune(configs=configs(dict(BLOCK_P=(16, 32, 64), num_warps=(2, 4)), interpreted=dict(BLOCK_P=128)),
                 key=['H', 'W', 'D', 'KH', 'KW', 'DH', 'DW'])
@triton.jit
def weighted_sum_kernel(Wt, Y, OUT, H, W, D,
                        KH: tl.constexpr, KW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_p, offs_e, offs_d, mask_p, mask_pe, mask_ped, sy, py, ry, nj, bx = _setup(
        pid_p, H, W, D, KH, KW, DH, DW, BLOCK_P, BLOCK_KW, BLOCK_D)
    HW = H * W
    base = pid_bh.to(tl.int64) * HW * D
    w_ptrs = Wt + pid_bh.to(tl.int64) * HW * (KH * KW) + offs_p[:, None] * (KH * KW) + offs_e[None, :]
    acc = tl.zeros((BLOCK_P, BLOCK_D), dtype=tl.float32)
    for a in range(KH):
        ni = (sy + a) * DH + ry
        nbr = ni[:, None] * W + nj
        w = tl.load(w_ptrs + a * KW, mask=mask_pe, other=0.).to(tl.float32)
        y = tl.load(Y + base + nbr[:, :, None] * D + offs_d[None, None, :], mask=mask_ped, other=0.).to(tl.float32)
        acc += tl.sum(w[:, :, None] * y, axis=1)
    tl.store(OUT + base + offs_p[:, None] * D + offs_d[None, :], acc.to(OUT.dtype.element_ty),
             mask=mask_p[:, None] & (offs_d[None, :] < D))


@triton.autotune(configs=configs(dict(BLOCK_P=(16, 32, 64), num_warps=(2, 4)), interpreted=dict(BLOCK_P=128)),
                 key=['H', 'W', 'D', 'KH', 'KW', 'DH', 'DW'], reset_to_zero=['OUT'])
@triton.jit
def scatter_kernel(Wt, X, OUT, H, W, D,
                   KH: tl.constexpr, KW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
                   BLOCK_P: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr):
    """OUT (fp32, zero-initialised) [n_t(p)] += Wt[p, t] * X[p] for every pixel p and tap t."""
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_p, offs_e, offs_d, mask_p, mask_pe, mask_ped, sy, py, ry, nj, bx = _setup(
        pid_p, H, W, D, KH, KW, DH, DW, BLOCK_P, BLOCK_KW, BLOCK_D)
    HW = H * W
    base = pid_bh.to(tl.int64) * HW * D
    x = tl.load(X + base + offs_p[:, None] * D + offs_d[None, :],
                mask=mask_p[:, None] & (offs_d[None, :] < D), other=0.).to(tl.float32)
    w_ptrs = Wt + pid_bh.to(tl.int64) * HW * (KH * KW) + offs_p[:, None] * (KH * KW) + offs_e[None, :]
    for a in range(KH):
        ni = (sy + a) * DH + ry
        nbr = ni[:, None] * W + nj
        w = tl.load(w_ptrs + a * KW, mask=mask_pe, other=0.).to(tl.float32)
        tl.atomic_add(OUT + base + nbr[:, :, None] * D + offs_d[None, None, :], w[:, :, None] * x[:, None, :],
                      mask=mask_ped)
