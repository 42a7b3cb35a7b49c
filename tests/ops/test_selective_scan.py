"""zoo.ops.selective_scan: the chunked reference against the sequential loop, and the Triton kernels
against both (interpreter on CPU at tiny shapes; realistic shapes on CUDA)."""
import pytest
import torch
from zoo.ops._dispatch import HAS_TRITON
from zoo.ops.selective_scan import selective_scan_loop, selective_scan_states, selective_scan_states_reference

HAS_CUDA = torch.cuda.is_available()
# the Triton cases run natively on a GPU, in the interpreter on CPU (conftest sets TRITON_INTERPRET=1 only there)
DEVICE = 'cuda' if HAS_CUDA else 'cpu'
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


def _inputs(Bt, D, L, dtype=torch.float32, device='cpu', seed=0, delta_scale=2., grouped_b=True):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s, scale=1.: (torch.randn(*s, generator=g) * scale).to(device=device, dtype=dtype)  # noqa: E731
    u, delta = mk(Bt, D, L), mk(Bt, D, L, scale=delta_scale)
    A = -(torch.rand(D, 1, generator=g) * 2 + 0.05).to(device=device, dtype=dtype)
    B = mk(Bt, 1, 1, L) if grouped_b else mk(Bt, 1, L)
    bias = mk(D)
    return [t.requires_grad_() for t in (u, delta, A, B, bias)]


# chunk None: the eager default (4, carries chunked again over several levels); 16: the exported graphs' chunk
@pytest.mark.parametrize('chunk', [None, 16])
@pytest.mark.parametrize('L', [1, 5, 32, 33, 97, 3136])
def test_chunked_reference_matches_loop_fp64(L, chunk):
    u, delta, A, B, bias = (t.detach().double() for t in _inputs(2, 3, L, grouped_b=(L % 2 == 0)))
    out = selective_scan_states_reference(u, delta, A, B, bias, chunk=chunk)
    ref = selective_scan_loop(u, delta, A, B, bias)
    assert out.shape == (2, 3, 1, L) and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_reference_fp32_output_and_stability():
    # long sequence with strong decay: a log-space exp(-cumsum) factorisation would overflow here
    u, delta, A, B, bias = (t.detach() for t in _inputs(1, 4, 3136, delta_scale=6.))
    out = selective_scan_states_reference(u.half(), delta.half(), A, B.half(), bias)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref = selective_scan_loop(u.double(), delta.double(), A.double(), B.double(), bias.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)  # fp16 inputs


def test_reference_exports_to_onnx_at_any_length():
    """Exported with a dynamic length and run in ONNX Runtime at lengths that are not a multiple of the chunk:
    the chunk count must be a ceil division that survives export (-(-L // c) does not: ONNX Div truncates)."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    import warnings

    import onnxruntime as ort

    class Scan(torch.nn.Module):
        def forward(self, u, delta, A, B, bias):
            return selective_scan_states_reference(u, delta, A, B, bias)

    example = [t.detach() for t in _inputs(1, 3, 40, grouped_b=False)]
    length = torch.export.Dim('L', min=2, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(Scan(), tuple(example), None, dynamo=True, verbose=False,
                                    dynamic_shapes=({2: length}, {2: length}, None, {2: length}, None))
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=['CPUExecutionProvider'])
    for L in (17, 81, 97):
        inputs = [t.detach() for t in _inputs(1, 3, L, grouped_b=False, seed=L)]
        (got,) = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})
        torch.testing.assert_close(torch.from_numpy(got), selective_scan_loop(*inputs), rtol=1e-4, atol=1e-5)


def test_reference_gradients_match_loop():
    leaves = [t.detach().double().requires_grad_() for t in _inputs(2, 3, 45)]
    g_out = torch.randn(2, 3, 1, 45, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (selective_scan_states_reference, selective_scan_loop):
        out = fn(*leaves)
        grads.append(torch.autograd.grad((out * g_out).sum(), leaves))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_bad_shapes_raise():
    u, delta, A, B, bias = (t.detach() for t in _inputs(1, 3, 8))
    with pytest.raises(ValueError):
        selective_scan_states(u, delta[:, :2], A, B, bias)
    with pytest.raises(ValueError):
        selective_scan_states(u, delta, A[:2], B, bias)


def _compare_triton(Bt, D, L, dtype, device, atol, rtol, softplus=True):
    from zoo.ops.selective_scan import selective_scan_states_triton
    leaves = _inputs(Bt, D, L, dtype=dtype, device=device)
    g_out = torch.randn(Bt, D, 1, L, generator=torch.Generator().manual_seed(5)).to(device)
    ref_leaves = [t.detach().double().cpu().requires_grad_() for t in leaves]
    ref = selective_scan_loop(*ref_leaves, delta_softplus=softplus)
    ref_grads = torch.autograd.grad((ref * g_out.double().cpu()).sum(), ref_leaves)
    out = selective_scan_states_triton(*leaves, delta_softplus=softplus)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad((out * g_out).sum(), leaves)
    torch.testing.assert_close(out.double().cpu(), ref, atol=atol, rtol=rtol)
    for name, a, b in zip(('du', 'ddelta', 'dA', 'dB', 'dbias'), grads, ref_grads):
        torch.testing.assert_close(a.double().cpu(), b, atol=atol, rtol=rtol, msg=lambda m: f'{name}: {m}')


@needs_triton
@pytest.mark.parametrize('Bt,D,L', [(2, 3, 5), (1, 5, 70), (2, 40, 33), (1, 2, 1)])
def test_triton_matches_loop(Bt, D, L):
    _compare_triton(Bt, D, L, torch.float32, DEVICE, atol=1e-4, rtol=1e-4)


@needs_triton
def test_triton_without_softplus():
    _compare_triton(1, 3, 20, torch.float32, DEVICE, atol=1e-4, rtol=1e-4, softplus=False)


@pytest.mark.skipif(not HAS_CUDA, reason='needs CUDA')
@pytest.mark.parametrize('Bt,D,L', [(4, 64, 3136), (2, 128, 784), (3, 48, 13 * 16)])
def test_triton_cuda_realistic(Bt, D, L):
    _compare_triton(Bt, D, L, torch.float32, 'cuda', atol=1e-3, rtol=1e-3)


@needs_triton
def test_custom_op_opcheck():
    """torch.library.opcheck: fake (meta) kernel, schema and autograd registration of the Triton op."""
    u, delta, A, B, bias = _inputs(1, 3, 7, grouped_b=False, device=DEVICE)
    torch.library.opcheck(torch.ops.zoo.selective_scan_states.default, (u, delta, A, B, bias, True))
