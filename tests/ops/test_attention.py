"""zoo.ops.attention: Triton kernels against the reference, forward and every gradient.

On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in conftest) on small
shapes; with a GPU the realistic shapes in fp32/fp16/bf16 run too.
"""
import importlib

import pytest
import torch
from zoo.ops import attention, attention_reference
from zoo.ops._dispatch import HAS_TRITON, use_triton

HAS_CUDA = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


def _inputs(B, H, N, M, D, DV, bias_shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype).requires_grad_()  # noqa: E731
    q, k, v = mk(B, H, N, D), mk(B, H, M, D), mk(B, H, M, DV)
    bias = mk(*bias_shape) if bias_shape is not None else None
    return q, k, v, bias


def _run(fn, q, k, v, bias, scale, dout):
    leaves = [t for t in (q, k, v, bias) if t is not None]
    for t in leaves:
        t.grad = None
    out = fn(q, k, v, bias, scale)
    out.backward(dout)
    return out.detach(), [t.grad.detach().clone() for t in leaves]


def _compare(B, H, N, M, D, DV, bias_shape, dtype, device, atol, rtol, scale=None):
    from zoo.ops.attention import attention_triton
    q, k, v, bias = _inputs(B, H, N, M, D, DV, bias_shape, dtype, device)
    dout = torch.randn(B, H, N, DV, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
    # the oracle: the reference in fp64 on the same values
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    ref_out, ref_grads = _run(attention_reference, q64, k64, v64, b64, scale, dout.double())
    tri_out, tri_grads = _run(attention_triton, q, k, v, bias, scale, dout)
    torch.testing.assert_close(tri_out.double(), ref_out, atol=atol, rtol=rtol)
    for name, g_tri, g_ref in zip('q k v bias'.split(), tri_grads, ref_grads):
        torch.testing.assert_close(g_tri.double(), g_ref, atol=atol, rtol=rtol, msg=lambda m: f'd{name}: {m}')


# small shapes for the interpreter: ragged tiles (N, M not multiples of 16), head dims below 16,
# Dv != D, every bias broadcast form, cross-attention (N != M)
SMALL_CASES = [
    # B, H, N, M, D, DV, bias_shape
    (2, 2, 16, 16, 16, 16, None),
    (2, 3, 7, 7, 8, 8, (3, 7, 7)),            # shared per-head table, head dim 8, tiny window
    (4, 2, 20, 20, 16, 24, (2, 2, 20, 20)),   # one bias per window position (Bb = 2 of B = 4)
    (2, 1, 9, 13, 12, 5, (9, 13)),            # cross-attention, one bias for all heads
    (3, 2, 70, 70, 16, 16, (3, 2, 70, 70)),   # two query/key tiles with a ragged edge, full bias
]


@needs_triton
@pytest.mark.parametrize('case', SMALL_CASES, ids=lambda c: 'x'.join(map(str, c[:6])) + f'-bias{c[6]}')
def test_triton_matches_reference_small(case):
    if HAS_CUDA:
        pytest.skip('interpreter cases: the GPU runs the realistic cases')
    _compare(*case, dtype=torch.float32, device='cpu', atol=2e-5, rtol=2e-5)


@needs_triton
def test_triton_fp16_interpreter():
    if HAS_CUDA:
        pytest.skip('interpreter cases: the GPU runs the realistic cases')
    _compare(2, 2, 16, 16, 16, 16, (2, 16, 16), dtype=torch.float16, device='cpu', atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_CUDA and HAS_TRITON), reason='needs CUDA and triton')
@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize('B,H,N,D,bias_kind', [
    (256, 4, 49, 16, 'table'),   # EfficientViT / DaViT 7x7 windows
    (64, 8, 144, 32, 'window'),  # 12x12 windows, per-window bias
    (32, 4, 256, 64, 'table'),   # MOAT-style 16x16 window, head 64
    (16, 2, 196, 24, 'none'),    # odd length and head dim
])
def test_triton_matches_reference_gpu(B, H, N, D, bias_kind, dtype, atol):
    bias_shape = {'table': (H, N, N), 'window': (4, H, N, N), 'none': None}[bias_kind]
    _compare(B, H, N, N, D, D, bias_shape, dtype, 'cuda', atol=atol, rtol=atol)


@pytest.mark.parametrize('B,H,N,M,D,DV,bias_shape', [
    (3, 2, 11, 11, 8, 8, (2, 11, 11)), (4, 2, 9, 7, 8, 5, (2, 2, 9, 7)), (2, 1, 5, 5, 4, 4, (5, 5)),
    (2, 3, 6, 6, 4, 4, None), (6, 3, 4, 4, 4, 4, (3, 1, 4, 4)),
])
def test_eager_and_export_forms_agree(B, H, N, M, D, DV, bias_shape, monkeypatch):
    """The SDPA form (eager) and the written-out form (exports) are the same function."""
    from zoo.ops.attention.reference import attention_math, normalize_bias
    q, k, v, bias = _inputs(B, H, N, M, D, DV, bias_shape, torch.float64, 'cpu')
    expected = attention_math(q, k, v, normalize_bias(bias, q, k), 0.3)
    ref_mod = importlib.import_module('zoo.ops.attention.reference')
    monkeypatch.setattr(ref_mod, '_SDPA_MIN_SCORES', 0)  # take the SDPA form even at these small sizes
    torch.testing.assert_close(attention_reference(q, k, v, bias, 0.3), expected)
    # and the written-out form against a direct per-item loop of the definition
    nb = normalize_bias(bias, q, k)
    for b in range(B):
        logits = 0.3 * q[b] @ k[b].transpose(-1, -2) + (nb[b % nb.shape[0]] if nb is not None else 0)
        torch.testing.assert_close(expected[b], logits.softmax(-1) @ v[b])


def test_bias_broadcast_per_window():
    """Bb = windows per image: item b uses bias[b % Bb]."""
    q, k, v, _ = _inputs(6, 1, 5, 5, 4, 4, None, torch.float64, 'cpu')
    bias = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    out = attention_reference(q, k, v, bias)
    for b in range(6):
        expected = attention_reference(q[b:b + 1], k[b:b + 1], v[b:b + 1], bias[b % 3:b % 3 + 1])
        torch.testing.assert_close(out[b:b + 1], expected)


def test_bad_shapes_raise_clear_errors():
    q, k, v, _ = _inputs(4, 2, 5, 5, 4, 4, None, torch.float32, 'cpu')
    with pytest.raises(ValueError, match='batch 4 a multiple of Bb'):
        attention(q, k, v, torch.zeros(3, 2, 5, 5))
    with pytest.raises(ValueError, match='does not fit'):
        attention(q, k, v, torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match='4-D'):
        attention(q[0], k, v)


def test_dispatch_picks_reference_on_cpu_and_in_export(monkeypatch):
    x = torch.zeros(1)
    assert not use_triton(x)
    monkeypatch.setenv('ZOO_OPS', 'reference')
    assert not use_triton(x)
    monkeypatch.setenv('ZOO_OPS', 'bogus')
    with pytest.raises(ValueError, match='ZOO_OPS'):
        use_triton(x)
    monkeypatch.setenv('ZOO_OPS', 'triton')
    assert not use_triton(x)  # CPU tensors always take the reference
    monkeypatch.delenv('ZOO_OPS')
    if HAS_CUDA:
        xc = x.cuda()
        assert use_triton(xc) == HAS_TRITON
        monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
        assert not use_triton(xc)


def test_dispatch_reference_under_onnx_export(monkeypatch, tmp_path):
    """The exported graph is the reference's plain ops (no zoo:: custom op)."""
    pytest.importorskip('onnx')
    import importlib
    attn_mod = importlib.import_module("zoo.ops.attention")  # the sub-package, not the function
    calls = []
    monkeypatch.setattr(attn_mod, 'attention_reference',
                        lambda *a, **k: calls.append(1) or attention_reference(*a, **k))

    class M(torch.nn.Module):
        def forward(self, q, k, v):
            return attn_mod.attention(q, k, v)

    q = torch.randn(1, 1, 4, 4)
    torch.onnx.export(M(), (q, q, q), str(tmp_path / 'a.onnx'), dynamo=False)
    assert calls, 'the reference path was not taken during export'


@needs_triton
def test_custom_op_registered_with_fake_impl():
    """torch.compile / torch.export see zoo::attention_fwd as one op with a shape function."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 3, 10, 8)
        out, lse = torch.ops.zoo.attention_fwd(q, q, torch.empty(2, 3, 10, 5), None, 0.5)
    assert out.shape == (2, 3, 10, 5) and lse.shape == (2, 3, 10)


@needs_triton
def test_torch_compile_fullgraph_and_export_see_one_op():
    """Dynamo traces the Triton path as the zoo::attention_fwd op (forward and backward), no graph break."""
    if HAS_CUDA:
        pytest.skip('checked on CPU through the interpreter; the GPU runs the kernels natively')
    from zoo.ops.attention import attention_triton
    q, k, v, bias = _inputs(2, 2, 9, 9, 16, 16, (2, 9, 9), torch.float32, 'cpu')

    def f(q, k, v, bias):
        return attention_triton(q, k, v, bias, 0.25)

    compiled = torch.compile(f, fullgraph=True, backend='aot_eager')
    out = compiled(q, k, v, bias)
    out.sum().backward()
    torch.testing.assert_close(out, attention_reference(q, k, v, bias, 0.25), atol=2e-5, rtol=2e-5)
    assert q.grad is not None and bias.grad is not None

    class M(torch.nn.Module):
        def forward(self, q, k, v):
            return attention_triton(q, k, v, None, 0.25)

    ep = torch.export.export(M(), tuple(t.detach() for t in (q, k, v)))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == 'call_function']
    assert any('zoo.attention_fwd' in t for t in targets), targets


@needs_triton
def test_custom_op_opcheck():
    """torch.library.opcheck: schema, fake impl and autograd registration agree with the real kernel."""
    if HAS_CUDA:
        pytest.skip('checked on CPU through the interpreter')
    q, k, v, bias = _inputs(1, 2, 5, 5, 16, 16, (2, 5, 5), torch.float32, 'cpu')
    torch.library.opcheck(torch.ops.zoo.attention_fwd.default, (q, k, v, bias, 0.5),
                          test_utils=('test_schema', 'test_faketensor', 'test_autograd_registration'))


@needs_triton
def test_triton_reads_strided_qkv_views():
    """q / k / v as the strided views a qkv Linear gives ([B, N, 3, H, D] permuted): the forward reads them in
    place (no copy), so their strides must be honoured, and the backward gets what it needs."""
    device = 'cuda' if HAS_CUDA else 'cpu'
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(4, 20, 3, 2, 16, generator=g).to(device).requires_grad_()
    bias = torch.randn(2, 20, 20, generator=g).to(device)
    from zoo.ops.attention import attention_triton
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    assert not q.is_contiguous()
    out = attention_triton(q, k, v, bias)
    (grad,) = torch.autograd.grad(out.sum(), qkv)
    ref_in = qkv.detach().double().requires_grad_()
    ref = attention_reference(*ref_in.permute(2, 0, 3, 1, 4).unbind(0), bias.double())
    (ref_grad,) = torch.autograd.grad(ref.sum(), ref_in)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(grad.double(), ref_grad, atol=2e-5, rtol=2e-5)
