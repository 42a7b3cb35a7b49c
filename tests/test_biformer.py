"""BiFormer: parity with the official code (fixtures), official key layouts, parameter counts, input handling."""
import json
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from zoo.models.biformer import checkpoint_filter_fn

import zoo  # noqa: F401  (registers the models)

PUBLISHED_PARAMS_M = {'biformer_tiny': 13.1, 'biformer_small': 25.5, 'biformer_base': 56.8, 'biformer_stl': 28.4}
CASES = ['small_224', 'small_autopad_160x192']


def _load_case(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'biformer', f'{case}.safetensors')
    t = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kw = json.loads(meta['constructor_kwargs'])
    sd = {k: t['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    # official constructor kwargs -> ours (qk_dims == embed_dim, kv_downsample 'identity': the released setting)
    assert kw['qk_dims'] == kw['embed_dim'] and kw['kv_downsample_mode'] == 'identity'
    model_kwargs = dict(depths=kw['depth'], embed_dims=kw['embed_dim'], head_dim=kw['head_dim'],
                        mlp_ratios=kw['mlp_ratios'], topks=kw['topks'], n_win=kw['n_win'],
                        side_dwconv=kw['side_dwconv'], pos_embed_kernel=kw['before_attn_dwconv'],
                        num_classes=kw['num_classes'])
    return t, sd, model_kwargs


@pytest.mark.parametrize('case', CASES)
def test_parity_with_official(fixtures_dir, case):
    t, sd, model_kwargs = _load_case(fixtures_dir, case)
    model = timm.create_model('biformer_tiny', **model_kwargs).eval()
    model.load_state_dict(checkpoint_filter_fn({'model': sd}, model))
    with torch.no_grad():
        final, feats = model.forward_intermediates(t['input'])
        out = model.forward_head(final)
    assert (out - t['output']).abs().max().item() <= 1e-4
    for i, f in enumerate(feats):
        if f'stage.{i}' in t:
            assert (f - t[f'stage.{i}']).abs().max().item() <= 1e-4, f'stage {i}'


def test_pretrained_file_loading(fixtures_dir, tmp_path):
    """pretrained=True + pretrained_cfg_overlay=dict(file=...) with an official-layout file, wrapper and all."""
    t, sd, model_kwargs = _load_case(fixtures_dir, 'small_224')
    path = str(tmp_path / 'official.safetensors')
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    model = timm.create_model('zoo_biformer_tiny', pretrained=True, **model_kwargs,
                              pretrained_cfg_overlay=dict(file=path, num_classes=model_kwargs['num_classes'])).eval()
    with torch.no_grad():
        assert (model(t['input']) - t['output']).abs().max().item() <= 1e-4
    converted = model.state_dict()
    assert checkpoint_filter_fn({'state_dict': converted}, model).keys() == converted.keys()  # idempotent


@pytest.mark.parametrize('variant', ['tiny', 'small', 'base', 'stl'])
def test_official_keys_fully_mapped(fixtures_dir, variant):
    with open(os.path.join(fixtures_dir, 'biformer', f'biformer_{variant}_keys.json')) as f:
        official = json.load(f)['keys']
    with torch.device('meta'):
        model = timm.create_model(f'biformer_{variant}')
    converted = checkpoint_filter_fn({'model': {k: torch.empty(s, device='meta') for k, s in official.items()}}, model)
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
    return timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), head_dim=16,
                             num_classes=5, **kwargs).eval()


@pytest.mark.parametrize('size', [(100, 76), (33, 65), (224, 224)])
def test_any_input_size_and_features(size):
    model = _tiny(n_win=4)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert model(x).shape == (1, 5)
        feats = model.forward_intermediates(x, intermediates_only=True)
    assert [f.shape[1] for f in feats] == [16, 32, 48, 64]
    h = size[0]
    for i, f in enumerate(feats):  # conv stride-2 pyramid: ceil halving
        h = (h + 1) // 2 if i == 0 else h
        h = (h + 1) // 2
        assert f.shape[2] == h


def test_bad_inputs_raise():
    model = _tiny()
    with pytest.raises(ValueError, match='expects input'):
        model(torch.randn(1, 4, 64, 64))
    assert model(torch.randn(1, 3, 16, 64)).shape[0] == 1  # auto-pad arithmetic: any size >= 1 px (issue 18.2)


def test_stl_layout_runs():
    model = timm.create_model('biformer_stl', depths=(1, 1, 1, 1), embed_dims=(32, 32, 64, 64), num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 3)
