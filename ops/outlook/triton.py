"""Triton kernels for outlook attention (VOLO), forward and backward, without the unfolded tensor.

Notation as in :mod:`.reference`: v [B, H, W, C] channels-last, logits [B, h, w, heads*k^4],
window l = (iy, ix) of the h x w grid covers pixels (iy*s - pad + ky, ix*s - pad + kx).

Every kernel is a *gather*: each program owns a tile of outputs and reads what it needs, so
no element is written twice, no atomics are used, and the backward is deterministic (the fold
of the reference becomes, per pixel, a sum over the <= ceil(k/s)^2 windows that cover it).

* forward, one program per (pixel tile, batch*head): for each window that covers the pixel
  (pixel = position p of that window), softmax row p of the window's logits and mix the k^2
  values of the window. Each (window, p) row belongs to exactly one pixel, so the softmax is
  computed once per row; its log-sum-exp is saved (fp32) for the backward.
* backward dlogits, one program per (window tile, batch*head): dP[p, q] = dout(pixel p) . v(q),
  dlogits = scale * P * (dP - rowsum(P * dP)); rows whose pixel lies in the padding get 0.
* backward dv, one program per (pixel tile, batch*head): for each window containing the pixel
  at position q, dv += sum_p P[p, q] * dout(pixel p), with P rebuilt from the saved lse.

Accumulation is fp32 whatever the input dtype; no tl.dot (the k^2 x k^2 products are tiny).
"""
import triton
import triton.language as tl

from .._autotune import configs

__all__ = ['outlook_fwd_kernel', 'outlook_bwd_dlogits_kernel', 'outlook_bwd_dv_kernel']


@triton.jit
def _window_of(t, PAD: tl.constexpr, STRIDE: tl.constexpr, K_OFF: tl.constexpr, n_win, valid):
    """Window index along one axis whose position K_OFF lands on coordinate t (valid mask, clamped index)."""
    u = t + PAD - K_OFF
    ok = valid & (u >= 0) & (u % STRIDE == 0) & (u // STRIDE < n_win)
    return tl.where(ok, u // STRIDE, 0), ok


@triton.autotune(configs=configs(dict(BLOCK_P=(32, 64, 128), num_warps=(2, 4)), interpreted=dict(BLOCK_P=64)),
                 key=['H', 'W', 'C', 'NH', 'K', 'STRIDE'])
@triton.jit
def outlook_fwd_kernel(
        V, LOGITS, OUT, LSE,
        H, W, h, w, C, NH, D, scale,
        K: tl.constexpr, PAD: tl.constexpr, STRIDE: tl.constexpr, K2P: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    K2: tl.constexpr = K * K
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    head = pid_bh % NH
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < H * W
    y = offs_p // W
    x = offs_p % W
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    offs_q = tl.arange(0, K2P)
    mask_q = offs_q < K2
    v_base = V + b * H * W * C + head * D
    row_stride = NH * K2 * K2  # logits per window
    l_base = LOGITS + b * h * w * row_stride + head * K2 * K2
    lse_base = LSE + b * h * w * NH * K2 + head * K2

    acc = tl.zeros([BLOCK_P, BLOCK_D], dtype=tl.float32)
    for ky in tl.static_range(K):
        iy, ok_y = _window_of(y, PAD, STRIDE, ky, h, mask_p)
        for kx in tl.static_range(K):
            ix, ok_x = _window_of(x, PAD, STRIDE, kx, w, mask_p)
            valid = ok_y & ok_x
            loc = iy * w + ix
            row_ptr = l_base + loc * row_stride + (ky * K + kx) * K2
            row = tl.load(row_ptr[:, None] + offs_q[None, :], mask=valid[:, None] & mask_q[None, :],
                          other=float('-inf')).to(tl.float32) * scale
            m = tl.where(valid, tl.max(row, axis=1), 0.0)
            s = tl.sum(tl.exp(row - m[:, None]), axis=1)
            lse = m + tl.log(tl.where(valid, s, 1.0))
            tl.store(lse_base + loc * NH * K2 + ky * K + kx, lse, mask=valid)
            for q in tl.static_range(K2):
                sy = iy * STRIDE - PAD + q // K
                sx = ix * STRIDE - PAD + q % K
                vmask = valid & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
                vals = tl.load(v_base + (sy * W + sx)[:, None] * C + offs_d[None, :],
                               mask=vmask[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
                logit = tl.load(row_ptr + q, mask=vmask, other=0.0).to(tl.float32) * scale
                prob = tl.where(vmask, tl.exp(logit - lse), 0.0)
                acc += prob[:, None] * vals
    out_ptrs = OUT + b * H * W * C + head * D + offs_p[:, None] * C + offs_d[None, :]
    tl.store(out_ptrs, acc.to(OUT.dtype.element_ty), mask=mask_p[:, None] & mask_d[None, :])


@triton.autotune(configs=configs(dict(BLOCK_L=(32, 64, 128), num_warps=(2, 4)), interpreted=dict(BLOCK_L=64)),
                 key=['H', 'W', 'C', 'NH', 'K', 'STRIDE'])
@triton.jit
def outlook_bwd_dlogits_kernel(
        DOUT, V, LOGITS, DLOGITS,
        H, W, h, w, C, NH, D, scale,
        K: tl.constexpr, PAD: tl.constexpr, STRIDE: tl.constexpr, K2P: tl.constexpr,
        BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    K2: tl.constexpr = K * K
    pid_l = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    head = pid_bh % NH
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_l = offs_l < h * w
    iy = offs_l // w
    ix = offs_l % w
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    offs_q = tl.arange(0, K2P)
    mask_q = offs_q < K2
    pix_base = b * H * W * C + head * D
    row_stride = NH * K2 * K2
    l_off = b * h * w * row_stride + head * K2 * K2 + offs_l * row_stride  # [BLOCK_L]

    for p in tl.static_range(K2):
        oy = iy * STRIDE - PAD + p // K
        ox = ix * STRIDE - PAD + p % K
        omask = mask_l & (oy >= 0) & (oy < H) & (ox >= 0) & (ox < W)
        dy = tl.load(DOUT + pix_base + (oy * W + ox)[:, None] * C + offs_d[None, :],
                     mask=omask[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
        row = tl.load(LOGITS + l_off[:, None] + p * K2 + offs_q[None, :], mask=mask_l[:, None] & mask_q[None, :],
                      other=float('-inf')).to(tl.float32) * scale
        m = tl.where(mask_l, tl.max(row, axis=1), 0.0)
        e = tl.exp(row - m[:, None])
        prob = e / tl.where(mask_l, tl.sum(e, axis=1), 1.0)[:, None]
        dp = tl.zeros([BLOCK_L, K2P], dtype=tl.float32)
        for q in tl.static_range(K2):
            sy = iy * STRIDE - PAD + q // K
            sx = ix * STRIDE - PAD + q % K
            vmask = mask_l & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
            vals = tl.load(V + pix_base + (sy * W + sx)[:, None] * C + offs_d[None, :],
                           mask=vmask[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
            dp = tl.where(offs_q[None, :] == q, tl.sum(dy * vals, axis=1)[:, None], dp)
        ds = prob * (dp - tl.sum(prob * dp, axis=1)[:, None]) * scale
        tl.store(DLOGITS + l_off[:, None] + p * K2 + offs_q[None, :], ds.to(DLOGITS.dtype.element_ty),
                 mask=mask_l[:, None] & mask_q[None, :])


@triton.autotune(configs=configs(dict(BLOCK_P=(32, 64, 128), num_warps=(2, 4)), interpreted=dict(BLOCK_P=64)),
                 key=['H', 'W', 'C', 'NH', 'K', 'STRIDE'])
@triton.jit
def outlook_bwd_dv_kernel(
        DOUT, LOGITS, LSE, DV,
        H, W, h, w, C, NH, D, scale,
        K: tl.constexpr, PAD: tl.constexpr, STRIDE: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    K2: tl.constexpr = K * K
    pid_p = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    head = pid_bh % NH
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < H * W
    y = offs_p // W
    x = offs_p % W
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    pix_base = b * H * W * C + head * D
    row_stride = NH * K2 * K2
    l_base = LOGITS + b * h * w * row_stride + head * K2 * K2
    lse_base = LSE + b * h * w * NH * K2 + head * K2

    acc = tl.zeros([BLOCK_P, BLOCK_D], dtype=tl.float32)
    for qy in tl.static_range(K):
        iy, ok_y = _window_of(y, PAD, STRIDE, qy, h, mask_p)
        for qx in tl.static_range(K):
            ix, ok_x = _window_of(x, PAD, STRIDE, qx, w, mask_p)
            valid = ok_y & ok_x
            loc = iy * w + ix
            for p in tl.static_range(K2):
                oy = iy * STRIDE - PAD + p // K
                ox = ix * STRIDE - PAD + p % K
                omask = valid & (oy >= 0) & (oy < H) & (ox >= 0) & (ox < W)
                dy = tl.load(DOUT + pix_base + (oy * W + ox)[:, None] * C + offs_d[None, :],
                             mask=omask[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
                logit = tl.load(l_base + loc * row_stride + p * K2 + qy * K + qx, mask=omask,
                                other=0.0).to(tl.float32) * scale
                lse = tl.load(lse_base + loc * NH * K2 + p, mask=omask, other=0.0)
                prob = tl.where(omask, tl.exp(logit - lse), 0.0)
                acc += prob[:, None] * dy
    tl.store(DV + pix_base + offs_p[:, None] * C + offs_d[None, :], acc.to(DV.dtype.element_ty),
             mask=mask_p[:, None] & mask_d[None, :])
