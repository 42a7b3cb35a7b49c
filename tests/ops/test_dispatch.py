"""zoo.ops._dispatch: the path rule, the crossover table and the one dtype rule of the fused kernels.

The dtype tests spy on each op's launcher (the function its custom op calls) and require every floating operand
that reaches the kernels to have one dtype: the CPU interpreter accepts a tl.dot of mixed fp32 / bf16 operands, a
GPU refuses it (A2Mamba's bf16 training step failed so), so the check has to be made before the launch.
"""
import importlib

import pytest
import torch
from zoo.ops import _dispatch
from zoo.ops._dispatch import HAS_TRITON, PATHS, choose_path, compute_dtype, forced_ops_mode
from zoo.ops._dispatch_table import RULES

HAS_CUDA = torch.cuda.is_available()
DEVICE = 'cuda' if HAS_CUDA else 'cpu'
# the interpreter's tl.dot is wrong on bf16 (SETUP.md), so CPU checks autocast with fp16
LOW = torch.bfloat16 if HAS_CUDA else torch.float16
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


class _FakeCuda:
    """Enough of a CUDA tensor for choose_path: it only asks where a tensor lives."""
    is_cuda = True


def test_cpu_and_export_take_the_reference(monkeypatch):
    x = torch.zeros(1)
    for mode in ('auto',) + PATHS:
        with forced_ops_mode(mode):
            assert choose_path('attention', (x,), RULES['attention']) == 'reference'
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert choose_path('attention', (_FakeCuda(),), RULES['attention']) == 'reference'


def test_auto_follows_the_table_and_forced_modes_override_it(monkeypatch):
    monkeypatch.setattr(_dispatch, 'HAS_TRITON', True)
    calls = []
    rule = lambda *t: calls.append(len(t)) or 'torch'  # noqa: E731
    x = _FakeCuda()
    assert choose_path('op', (x, None), rule) == 'torch' and calls == [2]
    for mode in PATHS:
        with forced_ops_mode(mode):
            assert choose_path('op', (x,), rule) == mode
    assert calls == [2], 'a forced mode must not consult the table'
    with forced_ops_mode('bogus'), pytest.raises(ValueError, match='ZOO_OPS'):
        choose_path('op', (x,), rule)
    monkeypatch.setattr(_dispatch, 'HAS_TRITON', False)
    assert choose_path('op', (x,), lambda *t: 'triton') == 'torch'  # no Triton: PyTorch's kernels
    with forced_ops_mode('triton'), pytest.raises(RuntimeError, match='triton'):
        choose_path('op', (x,), rule)


def test_table_rules_return_a_path():
    q = torch.zeros(8, 2, 49, 16)
    shared, per_window = torch.zeros(2, 49, 49), torch.zeros(4, 2, 49, 49)
    assert RULES['attention'](q, q, q, per_window) == 'triton'
    assert RULES['attention'](q, q, q, shared) in PATHS
    for op, rule in RULES.items():
        assert rule(q, q, q, None) in PATHS, op


def test_compute_dtype_rule():
    a, h = torch.zeros(2), torch.zeros(2, dtype=torch.float16)
    assert compute_dtype(a, h) == torch.float32
    assert compute_dtype(h, h, None) == torch.float16
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compute_dtype(a, h) == torch.bfloat16


@needs_triton
def test_triton_entry_refuses_cpu_tensors_outside_the_interpreter(monkeypatch):
    from zoo.ops.attention import attention_triton
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    q = torch.zeros(1, 1, 4, 8)
    with pytest.raises(ValueError, match='need CUDA tensors'):
        attention_triton(q, q, q)


def _spy(monkeypatch, module, name):
    """Record the dtypes of the floating tensors each call of module.<name> receives."""
    mod = importlib.import_module(module)
    real = getattr(mod, name)
    seen = []

    def spy(*args, **kwargs):
        seen.append({a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()})
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, name, spy)
    return seen


def _mixed(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(DEVICE)


def _one_dtype(seen, expected):
    assert seen, 'the launcher was not called'
    for dtypes in seen:
        assert dtypes == {expected}, dtypes


@needs_triton
@pytest.mark.parametrize('autocast', [False, True])
def test_attention_kernels_see_one_dtype(monkeypatch, autocast):
    from zoo.ops.attention import attention_triton
    fwd, bwd = _spy(monkeypatch, 'zoo.ops.attention', '_fwd_impl'), _spy(monkeypatch, 'zoo.ops.attention', '_bwd_impl')
    q = _mixed(2, 2, 16, 16).requires_grad_()
    k = _mixed(2, 2, 16, 16, seed=1).to(LOW).requires_grad_()
    v = _mixed(2, 2, 16, 16, seed=2).requires_grad_()
    bias = _mixed(2, 16, 16, seed=3)
    with torch.autocast(DEVICE, dtype=LOW, enabled=autocast):
        out = attention_triton(q, k, v, bias)
    expected = LOW if autocast else torch.float32
    assert out.dtype == expected
    out.float().sum().backward()
    _one_dtype(fwd, expected)
    _one_dtype([s - {torch.float32} if expected != torch.float32 else s for s in bwd], expected)  # lse is fp32
    assert q.grad.dtype == q.dtype and k.grad.dtype == k.dtype


@needs_triton
def test_other_ops_kernels_see_one_dtype(monkeypatch):
    from zoo.ops.channel_attention import channel_attention_triton
    from zoo.ops.neighborhood import neighborhood_av_triton, neighborhood_qk_triton
    from zoo.ops.outlook import outlook_attention_triton
    from zoo.ops.routing import region_topk, routed_attention_triton
    spies = {name: _spy(monkeypatch, mod, fn) for name, mod, fn in [
        ('channel', 'zoo.ops.channel_attention', '_fwd_impl'), ('routing', 'zoo.ops.routing', '_fwd_impl'),
        ('outlook', 'zoo.ops.outlook', '_fwd_impl'), ('pair_dot', 'zoo.ops.neighborhood', '_pair_dot'),
        ('weighted_sum', 'zoo.ops.neighborhood', '_weighted_sum')]}
    a, b = _mixed(1, 2, 20, 8), _mixed(1, 2, 20, 8, seed=1).to(LOW)
    with torch.autocast(DEVICE, dtype=LOW):
        assert channel_attention_triton(a, b, a).dtype == LOW
        q, k = _mixed(1, 1, 4, 16, 16), _mixed(1, 1, 4, 16, 16, seed=1).to(LOW)
        assert routed_attention_triton(q, k, q, region_topk(q, q, 2, 0.25), 0.25).dtype == LOW
        v, logits = _mixed(1, 6, 6, 4), _mixed(1, 3, 3, 81, seed=1).to(LOW)
        assert outlook_attention_triton(v, logits, num_heads=1, kernel_size=3, padding=1, stride=2).dtype == LOW
        x, y = _mixed(1, 1, 5, 5, 4), _mixed(1, 1, 5, 5, 4, seed=1).to(LOW)
        attn = neighborhood_qk_triton(x, y, 3)
        assert attn.dtype == LOW
        assert neighborhood_av_triton(attn.float(), y, 3).dtype == LOW
    for seen in spies.values():
        _one_dtype(seen, LOW)


@pytest.mark.skipif(not HAS_CUDA, reason='needs CUDA')
@pytest.mark.parametrize('name', ['zoo_a2mamba_n', 'zoo_biformer_tiny', 'zoo_davit_tiny', 'zoo_volo_d1_224',
                                  'zoo_overlock_xt', 'zoo_efficientvit_m0'])
def test_bf16_training_step_on_gpu(name):
    """A bf16-autocast training step through the default dispatch (A2Mamba's failed on mixed dtypes)."""
    import timm

    import zoo  # noqa: F401
    model = timm.create_model(name).cuda().train()
    x = torch.randn(4, 3, 224, 224, device='cuda')
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
