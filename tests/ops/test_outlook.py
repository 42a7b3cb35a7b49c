"""zoo.ops.outlook: the reference against a brute-force loop, the Triton kernels against the reference
(forward and both gradients), determinism of the backward, argument checks.

On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in conftest) on tiny shapes; with a GPU
realistic VOLO shapes in fp32 and bf16 run too.
"""
import math

import pytest
import torch
from zoo.ops._dispatch import HAS_TRITON
from zoo.ops.outlook import outlook_attention, outlook_attention_reference

HAS_CUDA = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


def _bruteforce(v, logits, num_heads, k, pad, stride, scale):
    """Direct loops over windows, heads and window positions: the definition, independent of unfold/fold."""
    B, H, W, C = v.shape
    h, w = logits.shape[1:3]
    d = C // num_heads
    out = torch.zeros_like(v)
    for b in range(B):
        for iy in range(h):
            for ix in range(w):
                for head in range(num_heads):
                    a = (logits[b, iy, ix].reshape(num_heads, k * k, k * k)[head] * scale).softmax(-1)
                    vals = torch.zeros(k * k, d, dtype=v.dtype)
                    for q in range(k * k):
                        sy, sx = iy * stride - pad + q // k, ix * stride - pad + q % k
                        if 0 <= sy < H and 0 <= sx < W:
                            vals[q] = v[b, sy, sx, head * d:(head + 1) * d]
                    y = a @ vals
                    for p in range(k * k):
                        oy, ox = iy * stride - pad + p // k, ix * stride - pad + p % k
                        if 0 <= oy < H and 0 <= ox < W:
                            out[b, oy, ox, head * d:(head + 1) * d] += y[p]
    return out


def _inputs(B, H, W, C, nh, k, stride, dtype=torch.float64, device='cpu', seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = math.ceil(H / stride), math.ceil(W / stride)
    v = torch.randn(B, H, W, C, generator=g, dtype=torch.float64)
    logits = 2 * torch.randn(B, h, w, nh * k ** 4, generator=g, dtype=torch.float64)
    dout = torch.randn(B, H, W, C, generator=g, dtype=torch.float64)
    return (t.to(device=device, dtype=dtype) for t in (v, logits, dout))


# B, H, W, C, heads, kernel, padding, stride: odd maps, stride 1 (9 overlapping windows), no padding, stride 3
CASES = [
    (1, 7, 9, 8, 2, 3, 1, 2),
    (1, 5, 4, 6, 1, 3, 1, 1),
    (1, 6, 4, 8, 2, 2, 0, 2),
]


@pytest.mark.parametrize('case', CASES + [(1, 9, 8, 6, 3, 5, 2, 3)], ids=str)
def test_reference_is_the_definition(case):
    B, H, W, C, nh, k, pad, stride = case
    v, logits, _ = _inputs(B, H, W, C, nh, k, stride)
    scale = (C // nh) ** -0.5
    expected = _bruteforce(v, logits, nh, k, pad, stride, scale)
    torch.testing.assert_close(outlook_attention_reference(v, logits, nh, k, pad, stride), expected)


def _compare_triton(case, dtype, device, atol, rtol):
    from zoo.ops.outlook import outlook_attention_triton
    B, H, W, C, nh, k, pad, stride = case
    v, logits, dout = _inputs(B, H, W, C, nh, k, stride)
    v64, l64 = v.clone().requires_grad_(), logits.clone().requires_grad_()
    ref = outlook_attention_reference(v64, l64, nh, k, pad, stride)
    ref_grads = torch.autograd.grad(ref, (v64, l64), dout)
    vt = v.to(device=device, dtype=dtype).requires_grad_()
    lt = logits.to(device=device, dtype=dtype).requires_grad_()
    out = outlook_attention_triton(vt, lt, nh, k, pad, stride)
    grads = torch.autograd.grad(out, (vt, lt), dout.to(device=device, dtype=dtype))
    torch.testing.assert_close(out.double().cpu(), ref, atol=atol, rtol=rtol)
    for name, g, r in zip(('dv', 'dlogits'), grads, ref_grads):
        torch.testing.assert_close(g.double().cpu(), r, atol=atol, rtol=rtol, msg=lambda m: f'{name}: {m}')


@needs_triton
@pytest.mark.parametrize('case', CASES, ids=str)
def test_triton_matches_reference(case):
    _compare_triton(case, torch.float32, 'cuda' if HAS_CUDA else 'cpu', atol=2e-5, rtol=1e-4)


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize('case,dtype', [((1, 9, 8, 6, 3, 5, 2, 3), torch.float32), (CASES[0], torch.float16)],
                         ids=['k5s3-fp32', 'fp16'])
def test_triton_matches_reference_slow(case, dtype):
    tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    _compare_triton(case, dtype, 'cuda' if HAS_CUDA else 'cpu', **tol)


@needs_triton
def test_triton_backward_is_deterministic():
    """The backward is a gather (no atomics): two runs give bit-identical gradients."""
    device = 'cuda' if HAS_CUDA else 'cpu'
    v, logits, dout = _inputs(1, 4, 4, 4, 1, 3, 1, dtype=torch.float32, device=device)
    scale = 0.5
    _, lse = torch.ops.zoo.outlook_fwd(v, logits, 1, 3, 1, 1, scale)
    first = torch.ops.zoo.outlook_bwd(dout, v, logits, lse, 1, 3, 1, 1, scale)
    second = torch.ops.zoo.outlook_bwd(dout, v, logits, lse, 1, 3, 1, 1, scale)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_bad_arguments():
    v = torch.randn(1, 6, 6, 8)
    with pytest.raises(ValueError, match='do not fit'):
        outlook_attention(v, torch.randn(1, 3, 3, 10), num_heads=2)
    with pytest.raises(ValueError, match='do not split'):
        outlook_attention(v, torch.randn(1, 3, 3, 3 * 81), num_heads=3)
    with pytest.raises(ValueError, match='windows'):
        outlook_attention(torch.randn(1, 5, 6, 8), torch.randn(1, 3, 3, 2 * 16), num_heads=2, kernel_size=2,
                          padding=0, stride=2)
    with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
        outlook_attention(torch.randn(6, 6, 8), torch.randn(3, 3, 162), num_heads=2)


@pytest.mark.skipif(not (HAS_CUDA and HAS_TRITON), reason='needs a CUDA GPU')
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('shape', [(8, 28, 28, 192, 6), (4, 48, 48, 384, 12), (2, 27, 31, 256, 8)], ids=str)
def test_triton_matches_reference_gpu(shape, dtype):
    B, H, W, C, nh = shape
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=3e-2, rtol=3e-2)
    _compare_triton((B, H, W, C, nh, 3, 1, 2), dtype, 'cuda', **tol)
