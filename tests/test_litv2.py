"""LITv2: parity with the official code (fixtures), official key layouts, parameter counts, input handling."""
import json
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from zoo.models.litv2 import checkpoint_filter_fn

import zoo  # noqa: F401  (registers the models)

PUBLISHED_PARAMS_M = {'litv2_s': 28, 'litv2_m': 49, 'litv2_b': 87, 'litv2_b_384': 87}
CASES = ['small_224', 'small_128']


def _load_case(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'litv2', f'{case}.safetensors')
    t = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kw = json.loads(meta['constructor_kwargs'])
    sd = {k: t['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    model_kwargs = dict(embed_dim=kw['embed_dim'], depths=kw['depths'], num_heads=kw['num_heads'],
                        local_ws=kw['local_ws'], alpha=kw['alpha'], mlp_ratio=kw['mlp_ratio'],
                        qkv_bias=kw['qkv_bias'], num_classes=kw['num_classes'])
    return t, sd, model_kwargs


@pytest.mark.parametrize('case', CASES)
def test_parity_with_official(fixtures_dir, case):
    t, sd, model_kwargs = _load_case(fixtures_dir, case)
    model = timm.create_model('litv2_s', **model_kwargs).eval()
    model.load_state_dict(checkpoint_filter_fn({'model': sd}, model))
    with torch.no_grad():
        final, feats = model.forward_intermediates(t['input'], output_fmt='NHWC')
        out = model.forward_head(final)
    assert (out - t['output']).abs().max().item() <= 1e-4
    for i, f in enumerate(feats):
        if f'stage.{i}' in t:  # official stage tokens (B, H*W, C)
            assert (f.flatten(1, 2) - t[f'stage.{i}']).abs().max().item() <= 1e-4, f'stage {i}'


def test_pretrained_file_loading(fixtures_dir, tmp_path):
    t, sd, model_kwargs = _load_case(fixtures_dir, 'small_128')
    path = str(tmp_path / 'official.safetensors')
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    model = timm.create_model('zoo_litv2_s', pretrained=True, **model_kwargs,
                              pretrained_cfg_overlay=dict(file=path, num_classes=model_kwargs['num_classes'])).eval()
    with torch.no_grad():
        assert (model(t['input']) - t['output']).abs().max().item() <= 1e-4
    converted = model.state_dict()
    assert checkpoint_filter_fn({'model': converted}, model).keys() == converted.keys()  # idempotent


@pytest.mark.parametrize('variant', ['s', 'm', 'b', 'b_384'])
def test_official_keys_fully_mapped(fixtures_dir, variant):
    with open(os.path.join(fixtures_dir, 'litv2', f'litv2_{variant}_keys.json')) as f:
        official = json.load(f)['keys']
    with torch.device('meta'):
        model = timm.create_model(f'litv2_{variant}')
    converted = checkpoint_filter_fn({k: torch.empty(s, device='meta') for k, s in official.items()}, model)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


@pytest.mark.parametrize('name', sorted(PUBLISHED_PARAMS_M))
def test_param_count_matches_published(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - PUBLISHED_PARAMS_M[name]) / PUBLISHED_PARAMS_M[name] <= 0.01, n


def test_names_registered():
    for name in PUBLISHED_PARAMS_M:
        assert timm.is_model(name) and timm.is_model('zoo_' + name)


def _tiny(**kwargs):
    return timm.create_model('litv2_s', embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), num_classes=5,
                             **kwargs).eval()


@pytest.mark.parametrize('size', [(100, 76), (38, 61), (128, 96)])
def test_any_input_size_non_square(size):
    """Padding to the patch and window multiples (odd maps in the window-2 stage) and non-square maps."""
    model = _tiny()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert model(x).shape == (1, 5)
        feats = model.forward_intermediates(x, intermediates_only=True)
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64]
    h = -(-size[0] // 4)
    for i, f in enumerate(feats):  # patch embed pads to /4, each DTM floors (the official detection code)
        assert f.shape[2] == h
        h //= 2


def test_hilo_padding_matches_explicit_pad_crop():
    """An odd map through HiLo equals zero-padding it to the window multiple, running, and cropping."""
    from zoo.models.litv2 import HiLo
    torch.manual_seed(0)
    hilo = HiLo(32, num_heads=4, window_size=2, alpha=0.5).eval()
    x = torch.randn(2, 5, 7, 32)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 1, 0, 1))
    with torch.no_grad():
        torch.testing.assert_close(hilo(x), hilo(padded)[:, :5, :7])


def test_bad_inputs_raise():
    model = _tiny()
    with pytest.raises(ValueError, match='expects input'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='at least 29'):
        model(torch.randn(1, 3, 64, 20))
