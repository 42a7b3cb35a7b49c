"""A2Mamba: parity with the official code (fixtures, incl. the smallest legal non-square input), weights,
parameter counts, the shared relative-position bias, and inputs the official code refuses."""
import json
import math
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from zoo.models.a2mamba import A2Mamba, checkpoint_filter_fn

import zoo  # noqa: F401  (registers the models)

VARIANTS = ['n', 't', 's', 'b', 'l']


def _load_case(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'a2mamba', f'{case}.safetensors')
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kw = json.loads(meta['constructor_kwargs'])
    assert kw['window_dilation'] == [1, 1, 1, 1] and kw['use_rpb']  # the only setting the variants use
    args = dict(embed_dims=kw['embed_dims'], depths=kw['depths'], num_heads=kw['num_heads'],
                window_size=kw['window_size'], mlp_ratios=kw['mlp_ratios'], layerscales=kw['layerscales'],
                resscales=kw['resscales'], layer_init_values=kw['layer_init_values'], projection=kw['projection'],
                img_size=kw['image_size'], num_classes=kw['num_classes'])
    official = {k: tensors['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    return tensors, args, official


def _build(args, official):
    model = A2Mamba(**args).eval()
    model.load_state_dict(checkpoint_filter_fn(official, model), strict=True)
    return model


@pytest.mark.parametrize('case', ['small_224', 'small_193x250'])
def test_parity_with_official(fixtures_dir, case):
    t, args, official = _load_case(fixtures_dir, case)
    model = _build(args, official)
    with torch.no_grad():
        final, feats = model.forward_intermediates(t['input'])
        out = model.forward_head(final)
    assert (out - t['output']).abs().max().item() <= 1e-4
    for i, feat in enumerate(feats):
        assert feat.shape == t[f'stage.{i}'].shape
        assert (feat - t[f'stage.{i}']).abs().max().item() <= 1e-4


@pytest.mark.parametrize('keep', ['rpb.0', 'rpb.1'])
def test_shared_rpb_loads_from_either_key(fixtures_dir, keep):
    t, args, official = _load_case(fixtures_dir, 'small_224')
    drop = 'rpb.1' if keep == 'rpb.0' else 'rpb.0'
    partial = {k: v for k, v in official.items() if not k.endswith(drop)}
    model = A2Mamba(**args).eval()
    model.load_state_dict(checkpoint_filter_fn(partial, model), strict=True)
    with torch.no_grad():
        assert (model(t['input']) - t['output']).abs().max().item() <= 1e-4


def test_pretrained_file_loads_and_changes_output(fixtures_dir, tmp_path):
    t, args, official = _load_case(fixtures_dir, 'small_224')
    path = tmp_path / 'official.pth'
    torch.save({'model': official}, path)
    overlay = dict(file=str(path), num_classes=args['num_classes'])
    torch.manual_seed(0)
    random = timm.create_model('a2mamba_n', **args).eval()
    loaded = timm.create_model('a2mamba_n', pretrained=True, pretrained_cfg_overlay=overlay, **args).eval()
    with torch.no_grad():
        out_random, out_loaded = random(t['input']), loaded(t['input'])
    assert (out_loaded - t['output']).abs().max().item() <= 1e-4
    assert (out_random - t['output']).abs().max().item() > 1e-2
    again = checkpoint_filter_fn(loaded.state_dict(), loaded)  # idempotent
    assert again.keys() == loaded.state_dict().keys()


# official code's counts (the L model's README says 95M; its code builds 93.74M)
PUBLISHED_M = dict(n=4.20, t=15.37, s=30.67, b=51.13, l=93.74)


@pytest.mark.parametrize('variant', VARIANTS)
def test_released_keys_and_param_counts(fixtures_dir, variant):
    keys = json.load(open(os.path.join(fixtures_dir, 'a2mamba', f'a2mamba_{variant}_keys.json')))['keys']
    with torch.device('meta'):
        model = timm.create_model(f'a2mamba_{variant}')
    converted = checkpoint_filter_fn({k: torch.empty(s, device='meta') for k, s in keys.items()}, model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    n_shared = sum(k.endswith('.rpb.1') for k in keys)  # rpb.1 is rpb.0 (one Parameter stored twice)
    assert len(keys) - n_shared == len(expected)
    official = sum(math.prod(s) for k, s in keys.items()
                   if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked', 'rope.angle', '.rpb.1')))
    ours = sum(p.numel() for p in model.parameters())
    assert ours == official
    assert abs(ours / 1e6 - PUBLISHED_M[variant]) / PUBLISHED_M[variant] < 0.01


def _tiny(**kw):
    return timm.create_model('a2mamba_n', embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_heads=(2, 4, 4, 4),
                             projection=32, **kw).eval()


@pytest.mark.parametrize('size', [(64, 64), (96, 130), (33, 47)])
def test_inputs_the_official_code_refuses(size):
    """Maps smaller than a window are padded for the mixer and cropped back (the official code raises)."""
    torch.manual_seed(0)
    model = _tiny(features_only=True)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, *size))
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    for f, r, c in zip(feats, [4, 8, 16, 32], [16, 32, 48, 64]):
        assert f.shape[1] == c and f.shape[-2] == math.ceil(size[0] / r) and torch.isfinite(f).all()


def test_bad_input_raises():
    with pytest.raises(ValueError, match='expects'):
        _tiny()(torch.randn(1, 4, 64, 64))


def test_export_path_matches_eager(capture_paths):
    """Under export the window padding, global-bias resize and scan padding always run (symbolic sizes)."""
    from zoo.models import a2mamba
    from zoo.ops.selective_scan import reference as scan_reference
    torch.manual_seed(0)
    model = timm.create_model('zoo_a2mamba_n', num_classes=5).eval()
    for size in ((64, 64), (224, 224)):  # maps below the window (padded), then the built size (none)
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x)
            with capture_paths(a2mamba, scan_reference):
                got = model(x)
        assert (got - ref).abs().max().item() <= 1e-5, size


def test_half_model_runs_and_keeps_the_fp32_islands():
    """A .half() model (what an fp16 ONNX export traces) runs: the fp32 islands (scan states, SSM output, gate)
    hand their results back in the weights' dtype; the output stays close to the fp32 model's."""
    torch.manual_seed(0)
    model = timm.create_model('zoo_a2mamba_n').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        got = model.half()(x.half())
    assert got.dtype == torch.float16
    assert (got.float() - ref).abs().max().item() <= 0.02 * ref.abs().max().item()


class _NarrowFloats(torch.overrides.TorchFunctionMode):
    """Records every floating-point tensor narrower than float64 that a torch function returns."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64:
                self.seen.add(f'{getattr(func, "__name__", func)} -> {t.dtype}')
        return out


def test_float64_model_is_float64_throughout():
    """model.double() computes in float64 everywhere (the official float64 run then agrees to ~1e-11): the fp32
    islands (scan decay, SSM output, gate) follow an input wider than fp32. fp32 islands left in a float64 run made
    its output differ from the official float64 output by 4.6e-4; here no torch function may return a narrower
    float at all, islands inside a module included."""
    torch.manual_seed(0)
    model = _tiny().double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad(), _NarrowFloats() as mode:
        out = model(x)
    assert out.dtype == torch.float64
    assert not mode.seen, sorted(mode.seen)
