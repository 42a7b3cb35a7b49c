"""CATANet (super-resolution): its own battery — parity with the official code (fixtures), key coverage, param
counts, sizes, padding, backward, state-dict round trip (token centres included), stable sort, ONNX export."""
import glob
import io
import json
import os

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch.utils._python_dispatch import TorchDispatchMode
from zoo.models.catanet import (
    LRSA,
    CATANet,
    ConvFFN,
    _attend,
    _center_step,
    _overlap_divisor,
    _patch_starts,
    _stable_cluster_order,
    checkpoint_filter_fn,
)

import zoo

# ../shared/reference/catanet.md §6: the official code's parameter counts (published ~0.48 / 0.55 / 0.54 M)
OFFICIAL_PARAMS = {'catanet_x2': 477.4e3, 'catanet_x3': 549.6e3, 'catanet_x4': 535.2e3}


def _small(upscale=2, **kwargs):
    """A 2-block CATANet with tiny groups: fast, but every code path (padding, several groups) runs."""
    args = dict(upscale=upscale, dim=16, qk_dim=12, mlp_dim=24, heads=2, n_iters=(3, 3), num_tokens=(4, 8),
                group_size=(64, 32), patch_size=(8, 12))
    args.update(kwargs)
    return CATANet(**args)


def _load_case(path):
    t = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    official_sd = {k: t['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    return t, json.loads(meta['constructor_kwargs']), official_sd


def _cases(fixtures_dir):
    paths = sorted(glob.glob(os.path.join(fixtures_dir, 'catanet', '*.safetensors')))
    if not paths:
        pytest.skip('no CATANet fixtures')
    return paths


def _check_case(path, float64: bool):
    """Outputs are O(50) with random weights, where the fp32 fixture itself is 7e-5..1e-4 away from the exact
    (float64) result. So: fp32 ours vs fixture relative to the output scale (measured ~2e-6), and, with
    ``float64``, the math held to the fixture in float64 (<= 1e-4) and our fp32 rounding to our float64 (<= 1e-4)."""
    t, kwargs, official_sd = _load_case(path)
    model = timm.create_model(f"catanet_x{kwargs['upscale']}").eval()
    model.load_state_dict(checkpoint_filter_fn(official_sd, model))
    name = os.path.basename(path)
    with torch.no_grad():
        out32 = model(t['input'])
    assert out32.shape == t['output'].shape
    rel = (out32 - t['output']).abs().max().item() / t['output'].abs().max().item()
    assert rel <= 1e-5, f'{name}: float32 vs fixture, relative to the output scale {rel}'
    if float64:
        with torch.no_grad():
            out64 = model.double()(t['input'].double())
        d64 = (out64 - t['output'].double()).abs().max().item()
        d32 = (out32.double() - out64).abs().max().item()
        assert d64 <= 1e-4, f'{name}: float64 vs fixture {d64}'
        assert d32 <= 1e-4, f'{name}: float32 vs float64 {d32}'


def test_parity_with_official(fixtures_dir):
    for path in _cases(fixtures_dir):
        _check_case(path, float64='x3' in os.path.basename(path))  # float64 on the smallest case only


@pytest.mark.slow
def test_parity_with_official_float64_all(fixtures_dir):
    for path in _cases(fixtures_dir):
        _check_case(path, float64=True)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_official_keys_fully_mapped(fixtures_dir, scale):
    path = os.path.join(fixtures_dir, 'catanet', f'catanet_x{scale}_keys.json')
    if not os.path.exists(path):
        pytest.skip(f'{path} absent')
    with open(path) as f:
        official = json.load(f)['keys']
    with torch.device('meta'):
        model = timm.create_model(f'catanet_x{scale}')
    converted = checkpoint_filter_fn({'params': {k: torch.empty(s, device='meta') for k, s in official.items()}},
                                     model)
    ours = model.state_dict()
    assert set(converted) == set(ours), set(converted) ^ set(ours)
    assert all(tuple(v.shape) == tuple(ours[k].shape) for k, v in converted.items())
    assert any(k.endswith('.means') for k in ours)  # the token centres are state-dict buffers
    assert set(checkpoint_filter_fn(converted, model)) == set(ours)  # idempotent


@pytest.mark.parametrize('name', sorted(OFFICIAL_PARAMS))
def test_param_counts_and_names(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - OFFICIAL_PARAMS[name]) / OFFICIAL_PARAMS[name] < 0.01, n
    assert timm.is_model('zoo_' + name)
    assert model.is_classifier is False
    assert model.pretrained_cfg['num_classes'] == 0 and model.pretrained_cfg['classifier'] is None
    assert model.pretrained_cfg['pool_size'] is None
    assert type(zoo.create_model(name)) is CATANet


@pytest.mark.parametrize('size', [(28, 28), (30, 41), (13, 9), (2, 3)])
def test_forward_sizes(size):
    torch.manual_seed(0)
    model = _small(upscale=3).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 3 * size[0], 3 * size[1])
    assert torch.isfinite(out).all()


def test_small_inputs_equal_the_model_on_the_padded_input():
    """Below the largest patch size the input is reflect-padded and the output cropped: equal to running the
    unpadded network on the padded image (where the official code silently collapses its patches to 1x1)."""
    torch.manual_seed(0)
    model = _small(upscale=2).eval()
    x = torch.rand(2, 3, 9, 10)
    padded = x
    while min(padded.shape[-2:]) < 12:  # same stepwise reflect padding, done by hand
        ph, pw = min(12 - padded.shape[-2], padded.shape[-2] - 1), min(12 - padded.shape[-1], padded.shape[-1] - 1)
        padded = F.pad(padded, (0, max(pw, 0), 0, max(ph, 0)), mode='reflect')
    assert padded.shape[-2:] == (12, 12)
    with torch.no_grad():
        out = model(x)
        ref = model(padded)[..., :18, :20]
    assert (out - ref).abs().max().item() == 0.


def test_backward_and_training_updates_centres():
    torch.manual_seed(0)
    model = _small(upscale=2).train()
    before = [tab.means.clone() for tab, _ in model.blocks]
    out = model(torch.rand(2, 3, 20, 16))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(bool(tab.initted) for tab, _ in model.blocks)
    assert all(not torch.equal(b, tab.means) for b, (tab, _) in zip(before, model.blocks))


def test_grad_checkpointing_same_output_and_single_ema_update():
    torch.manual_seed(0)
    ref, ckpt = _small(), _small()
    ckpt.load_state_dict(ref.state_dict())
    ckpt.set_grad_checkpointing(True)
    x = torch.rand(1, 3, 16, 16, requires_grad=False)
    for m in (ref, ckpt):
        m.train()
        m(x).square().mean().backward()
        m.eval()
    with torch.no_grad():  # the eval forward applies the deferred EMA update of the checkpointed model first
        assert torch.allclose(ref(x), ckpt(x), atol=1e-5)
    for (a, _), (b, _) in zip(ref.blocks, ckpt.blocks):
        assert torch.allclose(a.means, b.means, atol=1e-6)
    for (na, pa), (_, pb) in zip(ref.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5), na


def test_state_dict_round_trip_keeps_centres():
    torch.manual_seed(0)
    model = _small().eval()
    for tab, _ in model.blocks:
        tab.means.copy_(F.normalize(torch.randn_like(tab.means), dim=-1))
        tab.initted.fill_(True)
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        ref = model(x)
    blob = st_save({k: v.contiguous() for k, v in model.state_dict().items()})
    fresh = _small().eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), ref)
    fresh.load_state_dict(st_load(blob))
    with torch.no_grad():
        assert torch.equal(fresh(x), ref)


def test_stable_cluster_order():
    torch.manual_seed(0)
    assign = torch.randint(0, 5, (3, 200))
    expected = torch.argsort(assign, dim=-1, stable=True)
    assert torch.equal(_stable_cluster_order(assign, 5), expected)


def test_forward_intermediates_and_features():
    torch.manual_seed(0)
    model = _small().eval()
    x = torch.rand(1, 3, 14, 18)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        feats = model.forward_features(x)
    assert torch.equal(final, feats) and feats.shape == (1, 16, 14, 18)
    assert len(inter) == len(model.feature_info) == 2
    with pytest.raises(NotImplementedError):
        model.forward_head(feats)


def test_bad_inputs_raise():
    model = _small().eval()
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match='at least'):
        model(torch.rand(1, 3, 1, 32))
    with pytest.raises(ValueError, match='not a classifier'):
        _small(num_classes=10)


def test_onnx_export_matches():
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = _small(upscale=2).eval()
    for tab, _ in model.blocks:
        tab.initted.fill_(True)
    x = torch.rand(1, 3, 16, 20)
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=18)
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    assert abs(out - ref.numpy()).max() <= 1e-4


# ----------------------------------------------------------------------------------------------
# fast CPU paths held to the readable forms; float64 all the way through (no fp32 islands)

@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_attend_padded_fused_path_equals_plain_attention(dtype, tol):
    """q/k zero-padded to v's head dim (the fused CPU kernel) == written-out attention with scale dk ** -0.5."""
    g = torch.Generator().manual_seed(0)
    for B, N, M in [(3, 200, 200), (2, 150, 40), (1, 5, 7)]:  # fused SDPA and small written-out sizes
        q, k = torch.randn(B, 4, N, 9, generator=g, dtype=dtype), torch.randn(B, 4, M, 9, generator=g, dtype=dtype)
        v = torch.randn(B, 4, M, 10, generator=g, dtype=dtype)
        out = _attend(q, k, v)
        assert out.dtype == dtype and out.shape == (B, 4, N, 10)
        ref = ((q @ k.transpose(-1, -2)) * 9 ** -0.5).softmax(dim=-1) @ v  # written out
        assert (out - ref).abs().max().item() <= tol


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_conv_ffn_channels_first_equals_token_form(dtype, tol):
    torch.manual_seed(0)
    ffn = ConvFFN(16, 24).to(dtype)
    x = torch.randn(1, 12 * 10, 16, dtype=dtype, requires_grad=True)
    ref = ffn._forward_tokens(x, (12, 10))
    out = ffn._forward_channels_first(x, (12, 10))
    assert (out - ref).abs().max().item() <= tol
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *ffn.parameters()])
    g_out = torch.autograd.grad(out.square().sum(), [x, *ffn.parameters()])
    assert all((a - b).abs().max().item() <= 100 * tol for a, b in zip(g_ref, g_out))


def _lrsa_patch_loop(lrsa: LRSA, x: torch.Tensor, ps: int) -> torch.Tensor:
    """LRSA written out as the official code does it: a loop over the patches, pasted back with the overlap
    halving, all in x's dtype."""
    B, C, H, W = x.shape
    attn, ff = lrsa.layer
    out = torch.zeros_like(x)
    for top in _patch_starts(H, ps):
        for left in _patch_starts(W, ps):
            patch = x[:, :, top:top + ps, left:left + ps].flatten(2).transpose(1, 2)
            patch = attn(patch) + patch
            out[:, :, top:top + ps, left:left + ps] += patch.transpose(1, 2).reshape(B, C, ps, ps)
    out = out / (_overlap_divisor(H, ps)[:, None] * _overlap_divisor(W, ps)[None, :]).to(x.dtype)
    tokens = out.flatten(2).transpose(1, 2)
    tokens = ff(tokens, (H, W)) + tokens
    return tokens.transpose(1, 2).reshape(B, C, H, W)


def test_lrsa_float64_equals_patch_loop():
    """The patch reassembly follows a float64 input (it used to be summed in fp32: ~1e-7 away)."""
    torch.manual_seed(0)
    lrsa = LRSA(16, 12, 24, heads=2).double().eval()
    x = torch.randn(2, 16, 23, 30, dtype=torch.float64)
    with torch.no_grad():
        assert (lrsa(x, 8) - _lrsa_patch_loop(lrsa, x, 8)).abs().max().item() <= 1e-12


def test_center_step_float64_equals_one_hot_sums():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(2, 300, 16, dtype=torch.float64), dim=-1)
    centres = F.normalize(torch.randn(24, 16, dtype=torch.float64), dim=-1)
    buckets = (x @ centres.t()).argmax(dim=-1).flatten()
    sums = F.one_hot(buckets, 24).to(x.dtype).t() @ x.reshape(-1, 16)
    ref = torch.where((sums.abs().sum(-1) == 0)[:, None], centres, F.normalize(sums, dim=-1))
    out = _center_step(x, centres)
    assert out.dtype == torch.float64 and (out - ref).abs().max().item() <= 1e-12


class _Float64Downcasts(TorchDispatchMode):
    """Records every op that turns a float64 input into a float32 output."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat_in = torch.utils._pytree.tree_leaves((args, kwargs))
        flat_out = torch.utils._pytree.tree_leaves(out)
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in flat_in) and \
                any(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in flat_out):
            self.seen.append(str(func))
        return out


@pytest.mark.parametrize('train', [False, True])
def test_float64_model_has_no_float32_islands(train):
    """model.double() computes in float64 throughout (k-means sums, patch reassembly included), in eval and in
    training (where the k-means steps run)."""
    torch.manual_seed(0)
    model = _small().double().train(train)
    x = torch.rand(2, 3, 17, 20, dtype=torch.float64)
    with _Float64Downcasts() as spy:
        out = model(x)
    assert out.dtype == torch.float64
    assert not spy.seen, f'float64 -> float32 inside the model: {spy.seen}'


def test_per_image_eval_equals_batched_forward():
    """Eval on CPU runs a batch image by image once the centres are loaded; same values as the batched run, and
    the batched run wherever the images are not independent (centres not initialised yet)."""
    torch.manual_seed(0)
    model = _small().eval()
    x = torch.rand(3, 3, 14, 18)
    with torch.no_grad():
        assert not model._images_independent(x)  # centres not initialised: computed from the whole batch
        for tab, _ in model.blocks:
            tab.initted.fill_(True)
        assert model._images_independent(x)
        split = model.forward_intermediates(x)
        model.split_batch = False
        batched = model.forward_intermediates(x)
    for a, b in zip([split[0], *split[1]], [batched[0], *batched[1]]):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-5
