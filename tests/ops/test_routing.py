"""zoo.ops.routing: gather-free Triton kernels against the gather reference, forward and every gradient.

On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in conftest) on small shapes; with a GPU
realistic BiFormer shapes run too.
"""
import pytest
import torch
from zoo.ops._dispatch import HAS_TRITON
from zoo.ops.routing import (
    region_topk,
    routed_attention_reference,
    routing_attention,
    routing_attention_reference,
)

HAS_CUDA = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


def _inputs(B, H, R, T, D, DV, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype).requires_grad_()  # noqa: E731
    return mk(B, H, R, T, D), mk(B, H, R, T, D), mk(B, H, R, T, DV)


def _run(fn, q, k, v, idx, scale, dout):
    for t in (q, k, v):
        t.grad = None
    out = fn(q, k, v, idx, scale)
    out.backward(dout)
    return out.detach(), [t.grad.detach().clone() for t in (q, k, v)]


def _compare(B, H, R, T, D, DV, topk, dtype, device, atol, rtol):
    from zoo.ops.routing import routed_attention_triton
    q, k, v = _inputs(B, H, R, T, D, DV, dtype, device)
    scale = (H * D) ** -0.5
    idx = region_topk(q, k, topk, scale)
    assert idx.shape == (B, R, min(topk, R))
    dout = torch.randn(B, H, R, T, DV, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
    # the oracle: the gather reference in fp64 on the same values and the same routing
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref_out, ref_grads = _run(routed_attention_reference, q64, k64, v64, idx, scale, dout.double())
    tri_out, tri_grads = _run(routed_attention_triton, q, k, v, idx, scale, dout)
    torch.testing.assert_close(tri_out.double(), ref_out, atol=atol, rtol=rtol)
    for name, g_tri, g_ref in zip('qkv', tri_grads, ref_grads):
        torch.testing.assert_close(g_tri.double(), g_ref, atol=atol, rtol=rtol, msg=lambda m: f'd{name}: {m}')


# B, H, R (regions), T (tokens per region), D, DV, topk
SMALL_CASES = [
    (1, 2, 4, 49, 16, 16, 1),    # 7x7-token regions (not a power of two), topk 1
    (1, 1, 4, 64, 8, 8, 4),      # 8x8-token regions, every region routed, head dim 8
    (2, 1, 16, 4, 16, 8, 16),    # 2x2-token regions packed 16 to a key tile, topk 16 of 16, Dv != D
    (1, 1, 9, 80, 16, 16, 4),    # two query/key tiles per region (ragged), 3x3 regions
]


@needs_triton
@pytest.mark.parametrize('case', SMALL_CASES, ids=lambda c: 'x'.join(map(str, c)))
def test_triton_matches_reference_small(case):
    device = 'cuda' if HAS_CUDA else 'cpu'
    _compare(*case, dtype=torch.float32, device=device, atol=2e-5, rtol=2e-5)


@needs_triton
def test_triton_fp16_small():
    if not HAS_CUDA:
        # fp16 tl.dot works in the interpreter; keep the grid tiny
        _compare(1, 1, 4, 16, 16, 16, 2, torch.float16, 'cpu', atol=2e-2, rtol=2e-2)
    else:
        _compare(2, 2, 16, 49, 32, 32, 4, torch.float16, 'cuda', atol=2e-2, rtol=2e-2)


def test_reference_equals_dense_masked_attention():
    """The gather formulation equals dense attention where non-routed regions are masked out."""
    B, H, R, T, D = 2, 2, 9, 6, 8
    q, k, v = (t.detach().double() for t in _inputs(B, H, R, T, D, D, torch.float32, 'cpu'))
    scale = 0.2
    idx = region_topk(q, k, 3, scale)
    out = routing_attention_reference(q, k, v, 3, scale)
    allowed = torch.zeros(B, R, R, dtype=torch.bool).scatter_(2, idx, True)  # [B, Rq, Rk]
    mask = allowed[:, None, :, None, :, None].expand(B, H, R, T, R, T).reshape(B, H, R * T, R * T)
    logits = (q.reshape(B, H, R * T, D) * scale) @ k.reshape(B, H, R * T, D).transpose(-1, -2)
    dense = logits.masked_fill(~mask, float('-inf')).softmax(-1) @ v.reshape(B, H, R * T, D)
    torch.testing.assert_close(out.reshape(B, H, R * T, D), dense)


def test_region_topk_is_the_official_routing():
    """Region means of q and k, affinity summed over all heads (the whole channel dim), top-k per query region."""
    B, H, R, T, D = 1, 3, 16, 5, 4
    q, k, _ = (t.detach() for t in _inputs(B, H, R, T, D, D, torch.float64, 'cpu'))
    scale = (H * D) ** -0.5
    q_win = q.permute(0, 2, 3, 1, 4).reshape(B, R, T, H * D).mean(2)  # official: channels (m c), mean over tokens
    k_win = k.permute(0, 2, 3, 1, 4).reshape(B, R, T, H * D).mean(2)
    expected = ((q_win * scale) @ k_win.transpose(-1, -2)).topk(4, dim=-1).indices
    assert torch.equal(region_topk(q, k, 4, scale), expected)
    assert region_topk(q, k, 99, scale).shape[-1] == R  # clamped to the number of regions


def test_dispatch_cpu_runs_reference_and_checks_shapes():
    q, k, v = _inputs(1, 2, 4, 9, 8, 8, torch.float32, 'cpu')
    torch.testing.assert_close(routing_attention(q, k, v, 2, 0.3), routing_attention_reference(q, k, v, 2, 0.3))
    with pytest.raises(ValueError, match='5-D'):
        routing_attention(q[0], k[0], v[0], 2, 0.3)
    with pytest.raises(ValueError, match='do not agree'):
        routing_attention(q, k[:, :, :2], v, 2, 0.3)


@needs_triton
def test_bra_module_triton_path_on_padded_grid(monkeypatch):
    """The BiFormer attention at an auto-padded map (10x13 -> 12x15, 3x3 regions of 4x5 tokens) via the kernels."""
    from zoo.models import biformer
    from zoo.ops.routing import routed_attention_triton
    device = 'cuda' if HAS_CUDA else 'cpu'
    torch.manual_seed(0)
    attn = biformer.BiLevelRoutingAttention(16, num_heads=1, n_win=3, topk=2).to(device)
    x = torch.randn(1, 10, 13, 16, device=device)
    monkeypatch.setenv('ZOO_OPS', 'reference')
    ref = attn(x)
    monkeypatch.setattr(biformer, 'routing_attention', lambda q, k, v, topk, scale: routed_attention_triton(
        q, k, v, region_topk(q, k, topk, scale), scale))
    out = attn(x)
    assert out.shape == (1, 10, 13, 16)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.skipif(not HAS_CUDA, reason='needs CUDA')
@pytest.mark.parametrize('case', [
    (8, 2, 49, 64, 32, 32, 1),     # BiFormer-T stage 1 at 224 (8x8-token regions, topk 1)
    (8, 4, 49, 16, 32, 32, 4),     # stage 2
    (8, 8, 49, 4, 32, 32, 16),     # stage 3
    (2, 2, 256, 64, 32, 32, 1),    # detection-like n_win 16 at 512, stage 1: 256 regions of 8x8 tokens
    (2, 4, 256, 16, 32, 32, 4),    # same, stage 2: 256 regions of 4x4 tokens
])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_triton_matches_reference_gpu(case, dtype):
    tol = dict(atol=2e-5, rtol=2e-5) if dtype == torch.float32 else dict(atol=3e-2, rtol=3e-2)
    _compare(*case, dtype=dtype, device='cuda', **tol)


@needs_triton
def test_custom_op_opcheck():
    """zoo::routed_attention_fwd passes torch.library.opcheck: schema, fake (shape) impl, autograd registration,
    so torch.compile / torch.export see one op."""
    device = 'cuda' if HAS_CUDA else 'cpu'
    q, k, v = _inputs(1, 1, 4, 16, 16, 16, torch.float32, device)
    idx = region_topk(q, k, 2, 0.25).to(torch.int32)
    torch.library.opcheck(torch.ops.zoo.routed_attention_fwd.default, (q, k, v, idx, 0.25))
