"""zoo.ops.neighborhood: NATTEN 0.17 semantics.

* the reference against a brute-force loop written from NATTEN's own case-form index rules
  (``natten_cpu_commons.h``: window start / bias start), a formulation independent of the clamp form the
  reference uses;
* the Triton kernels against the reference, forward and every gradient (interpreter on CPU, tiny maps).
"""
import importlib
import math

import pytest
import torch
from zoo.ops._dispatch import HAS_TRITON
from zoo.ops.neighborhood import (
    neighbor_tables,
    neighborhood_av,
    neighborhood_av_reference,
    neighborhood_qk,
    neighborhood_qk_reference,
    neighborhood_rpb,
)

HAS_CUDA = torch.cuda.is_available()
# the Triton cases run natively on a GPU, in the interpreter on CPU (conftest sets TRITON_INTERPRET=1 only there)
DEVICE = 'cuda' if HAS_CUDA else 'cpu'
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')


def _class_len_case_form(L, d, rho):
    # ceil(L / d), minus one for the classes that padding L up to a multiple of d would fill
    full = math.ceil(L / d)
    return full - 1 if (L % d and rho >= L % d) else full


def _window_start_case_form(i, L, k, d):
    r = k // 2
    rho, p = i % d, i // d
    Lr = _class_len_case_form(L, d, rho)
    start = max(p - r, 0) + ((Lr - p - r - 1) if p + r >= Lr else 0)
    return start * d + rho


def _bias_start_case_form(i, L, k, d):
    r = k // 2
    if d == 1:
        return r + ((r - i) if i < r else 0) + ((L - i - 1 - r) if i + r >= L else 0)
    if i - r * d < 0:
        return k - 1 - i // d
    if i + r * d >= L:
        return (L - i - 1) // d
    return r


def _brute_qk_av(q, k, v, attn, ks, dil, rpb):
    """Loop oracle: returns (qk with rpb, av of ``attn``) at float64."""
    B, nh, H, W, D = q.shape
    (kh, kw), (dh, dw) = ks, dil
    qk = torch.zeros(B, nh, H, W, kh * kw, dtype=torch.float64)
    av = torch.zeros(B, nh, H, W, D, dtype=torch.float64)
    for i in range(H):
        ys, by = _window_start_case_form(i, H, kh, dh), _bias_start_case_form(i, H, kh, dh)
        for j in range(W):
            xs, bx = _window_start_case_form(j, W, kw, dw), _bias_start_case_form(j, W, kw, dw)
            for a in range(kh):
                for e in range(kw):
                    ni, nj, t = ys + a * dh, xs + e * dw, a * kw + e
                    qk[:, :, i, j, t] = (q[:, :, i, j] * k[:, :, ni, nj]).sum(-1)
                    if rpb is not None:
                        qk[:, :, i, j, t] += rpb[:, by + a, bx + e]
                    av[:, :, i, j] += attn[:, :, i, j, t, None] * v[:, :, ni, nj]
    return qk, av


# (H, W, kernel, dilation): kernels 3-13, dilations 1-4 (per axis too), odd / non-square maps,
# maps exactly kernel*dilation, every map/window/dilation the models use at small sizes
ORACLE_CASES = [
    (7, 9, 3, 1), (9, 7, 5, (1, 1)), (13, 14, 13, 1), (14, 17, 7, 2), (12, 11, 3, (4, 3)), (15, 15, 5, 3),
    (11, 13, (3, 5), (3, 2)), (8, 16, 3, (2, 4)), (13, 16, 7, (1, 2)), (14, 14, 7, 2), (7, 8, 7, 1),
    # several ragged tiles per axis and residue class in the tiled form
    (23, 19, 3, (2, 1)), (17, 26, (5, 3), (1, 3)),
]


# the reference's three formulations: the tiled matrix products (eager), the per-tap loop (eager problems too
# large for tiles) and the one-gather form (export)
FORMULATIONS = ('tap_loop', 'gather', 'tiled')


@pytest.fixture(params=FORMULATIONS)
def formulation(request, monkeypatch):
    monkeypatch.setattr(importlib.import_module('zoo.ops.neighborhood.reference'), '_formulation',
                        lambda *args: request.param)
    return request.param


@pytest.mark.parametrize('H,W,ks,dil', ORACLE_CASES)
def test_reference_matches_natten_case_form(H, W, ks, dil, formulation):
    g = torch.Generator().manual_seed(H * 100 + W)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    nh, D = 2, 3
    q, k, v = (torch.randn(1, nh, H, W, D, generator=g, dtype=torch.float64) for _ in range(3))
    attn = torch.randn(1, nh, H, W, kh * kw, generator=g, dtype=torch.float64)
    rpb = torch.randn(nh, 2 * kh - 1, 2 * kw - 1, generator=g, dtype=torch.float64)
    dil2 = (dil, dil) if isinstance(dil, int) else dil
    qk_ref, av_ref = _brute_qk_av(q, k, v, attn, (kh, kw), dil2, rpb)
    torch.testing.assert_close(neighborhood_qk(q, k, ks, dil, rpb), qk_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(neighborhood_av(attn, v, ks, dil), av_ref, rtol=1e-12, atol=1e-12)
    # the bias a pixel adds, as OverLoCK uses it (qk without keys)
    bias = neighborhood_rpb(rpb, H, W, ks, dil)
    torch.testing.assert_close(bias[None], qk_ref - neighborhood_qk(q, k, ks, dil), rtol=1e-12, atol=1e-12)


def test_tables_exhaustive_against_case_form():
    for k in (1, 3, 5, 7, 9, 11, 13):
        for d in range(1, 6):
            for L in range(k * d, k * d + 12):
                nbr, bias = neighbor_tables(L, k, d)
                starts = torch.tensor([_window_start_case_form(i, L, k, d) for i in range(L)])
                bstarts = torch.tensor([_bias_start_case_form(i, L, k, d) for i in range(L)])
                assert torch.equal(nbr[:, 0], starts), (L, k, d)
                assert torch.equal(bias[:, 0], bstarts), (L, k, d)
                assert torch.equal(nbr[:, 1:] - nbr[:, :-1], torch.full((L, k - 1), d)), (L, k, d)
                assert bool((nbr % d == torch.arange(L)[:, None] % d).all())


def test_graph_capture_takes_one_gather(monkeypatch):
    """Under export the op is the same few graph nodes whatever the kernel size (no per-tap loop)."""
    monkeypatch.setattr(importlib.import_module('zoo.ops.neighborhood.reference'), 'TILED_MAX_ELEMENTS', 0)

    class Op(torch.nn.Module):
        def __init__(self, kernel):
            super().__init__()
            self.kernel = kernel

        def forward(self, q, k):
            attn = neighborhood_qk(q, k, self.kernel, 1).softmax(-1)
            return neighborhood_av(attn, k, self.kernel, 1)

    q = torch.randn(1, 2, 14, 15, 4)
    programs = {kernel: torch.export.export(Op(kernel), (q, q)) for kernel in (3, 13)}
    assert len(programs[3].graph.nodes) == len(programs[13].graph.nodes)
    for kernel, program in programs.items():
        torch.testing.assert_close(program.module()(q, q), Op(kernel)(q, q))


@pytest.mark.parametrize('bad', [dict(H=6, ks=7, dil=1), dict(H=13, ks=7, dil=2), dict(H=9, ks=4, dil=1),
                                 dict(H=9, ks=3, dil=0)])
def test_invalid_arguments_raise(bad):
    x = torch.randn(1, 1, bad['H'], 16, 2)
    with pytest.raises(ValueError):
        neighborhood_qk(x, x, bad['ks'], bad['dil'])


def test_reference_gradients_fp64(formulation):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 6, 6, 2, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rpb = torch.randn(1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    attn = torch.randn(1, 1, 6, 6, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: neighborhood_qk_reference(a, b, 3, (2, 2), c), (q, k, rpb))
    assert torch.autograd.gradcheck(lambda a, b: neighborhood_av_reference(a, b, 3, (1, 2)), (attn, v))
    # a map that the tiled form cuts into several tiles per axis
    q, k = (torch.randn(1, 1, 8, 9, 2, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    attn = torch.randn(1, 1, 8, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: neighborhood_qk_reference(a, b, 3, 1), (q, k))
    assert torch.autograd.gradcheck(lambda a, b: neighborhood_av_reference(a, b, 3, 1), (attn, k))



def _compare_triton(B, nh, H, W, ks, dil, D, dtype, device, atol, rtol, with_rpb=True):
    from zoo.ops.neighborhood import neighborhood_av_triton, neighborhood_qk_triton
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    g = torch.Generator().manual_seed(H * 31 + W)
    mk = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype).requires_grad_()  # noqa: E731
    q, k, v = mk(B, nh, H, W, D), mk(B, nh, H, W, D), mk(B, nh, H, W, D)
    attn = mk(B, nh, H, W, kh * kw)
    rpb = mk(nh, 2 * kh - 1, 2 * kw - 1) if with_rpb else None
    g_attn = torch.randn(B, nh, H, W, kh * kw, generator=g).to(device=device, dtype=dtype)
    g_out = torch.randn(B, nh, H, W, D, generator=g).to(device=device, dtype=dtype)
    leaves = [t for t in (q, k, rpb, attn, v) if t is not None]

    def run(fn_qk, fn_av, tensors):
        q_, k_, rpb_, attn_, v_ = tensors
        a = fn_qk(q_, k_, ks, dil, rpb_)
        o = fn_av(attn_, v_, ks, dil)
        live = [t for t in tensors if t is not None]
        grads = torch.autograd.grad((a * g_attn.to(a.dtype)).sum() + (o * g_out.to(o.dtype)).sum(), live)
        return [a, o, *grads]

    as64 = [t.detach().double().requires_grad_() if t is not None else None for t in (q, k, rpb, attn, v)]
    ref = run(neighborhood_qk_reference, neighborhood_av_reference, as64)
    tri = run(neighborhood_qk_triton, neighborhood_av_triton, (q, k, rpb, attn, v))
    names = ['attn', 'out'] + ['d' + n for n, t in zip(('q', 'k', 'rpb', 'attn', 'v'), (q, k, rpb, attn, v))
                               if t is not None]
    assert len(leaves) + 2 == len(tri)
    for name, t, r in zip(names, tri, ref):
        torch.testing.assert_close(t.double(), r, atol=atol, rtol=rtol, msg=lambda m: f'{name}: {m}')


# interpreter cases: kernels 3-13, dilations 1-4 (per axis), odd / non-square maps, maps == kernel * dilation
TRITON_CASES = [
    # B, heads, H, W, kernel, dilation, D
    (2, 2, 7, 9, 3, 1, 4),
    (1, 2, 10, 11, 5, (2, 1), 3),
    (1, 1, 13, 14, 13, 1, 8),
    (1, 2, 9, 12, (3, 5), (3, 2), 16),
    (1, 1, 12, 13, 3, 4, 5),
    (1, 1, 14, 15, 7, 2, 6),
    (1, 1, 11, 11, 11, 1, 2),
    (1, 2, 7, 7, 7, 1, 32),
]


@needs_triton
@pytest.mark.parametrize('B,nh,H,W,ks,dil,D', TRITON_CASES)
def test_triton_matches_reference_fp32(B, nh, H, W, ks, dil, D):
    _compare_triton(B, nh, H, W, ks, dil, D, torch.float32, DEVICE, atol=1e-4, rtol=1e-4)


@needs_triton
def test_triton_without_rpb():
    _compare_triton(1, 2, 8, 7, 3, (2, 1), 4, torch.float32, DEVICE, atol=1e-4, rtol=1e-4, with_rpb=False)


@needs_triton
def test_dispatch_uses_reference_on_cpu():
    from zoo.ops._dispatch import use_triton
    x = torch.randn(1, 1, 5, 5, 2)
    assert not use_triton(x)


@pytest.mark.skipif(not HAS_CUDA, reason='needs CUDA')
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 8e-2)])
@pytest.mark.parametrize('B,nh,H,W,ks,dil,D', [(2, 4, 56, 56, 11, 5, 16), (2, 4, 14, 14, 13, 1, 32),
                                               (3, 2, 49, 63, 11, (4, 5), 16), (2, 8, 7, 8, 7, 1, 24)])
def test_triton_cuda_realistic(B, nh, H, W, ks, dil, D, dtype, tol):
    _compare_triton(B, nh, H, W, ks, dil, D, dtype, 'cuda', atol=tol, rtol=tol)


@needs_triton
def test_custom_ops_opcheck():
    """torch.library.opcheck: fake (meta) kernels, schemas and autograd registration of the Triton ops."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 1, 5, 6, 3, generator=g).to(DEVICE).requires_grad_() for _ in range(2))
    rpb = torch.randn(1, 5, 5, generator=g).to(DEVICE).requires_grad_()
    attn = torch.randn(1, 1, 5, 6, 9, generator=g).to(DEVICE).requires_grad_()
    torch.library.opcheck(torch.ops.zoo.neighborhood_qk.default, (q, k, rpb, 3, 3, 1, 2))
    torch.library.opcheck(torch.ops.zoo.neighborhood_av.default, (attn, q, 3, 3, 1, 2))


def test_tiled_tables_built_in_inference_mode_serve_autograd():
    """The tiled form caches its tables; built first under inference_mode they must still serve a backward."""
    q = torch.randn(1, 1, 11, 10, 2)
    attn = torch.randn(1, 1, 11, 10, 9)
    with torch.inference_mode():
        neighborhood_qk_reference(q, q, 3, (3, 2))
        neighborhood_av_reference(attn, q, 3, (3, 2))
    q.requires_grad_()
    attn.requires_grad_()
    (neighborhood_qk_reference(q, q, 3, (3, 2)).sum() + neighborhood_av_reference(attn, q, 3, (3, 2)).sum()).backward()
    assert q.grad is not None and attn.grad is not None


@pytest.mark.parametrize('H,W,ks,dil', [(14, 14, 13, 1), (23, 19, 3, (2, 1)), (12, 11, 3, (4, 3))])
def test_rpb_gather_export_form_equals_eager_form(monkeypatch, H, W, ks, dil):
    """gather_rpb reads the table one way eagerly and another under graph capture: the same values."""
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    rpb = torch.randn(3, 2 * kh - 1, 2 * kw - 1)
    eager = neighborhood_rpb(rpb, H, W, ks, dil)
    monkeypatch.setattr(importlib.import_module('zoo.ops.neighborhood.reference'), 'in_graph_capture', lambda: True)
    assert torch.equal(neighborhood_rpb(rpb, H, W, ks, dil), eager)
