"""DaViT: parity with timm's davit (identical weights) and with the official code (fixtures), key mapping of every
released checkpoint, parameter counts, inputs of any size, features."""
import json
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from zoo.models.davit import DaVit, checkpoint_filter_fn

import zoo  # noqa: F401  (registers the zoo models)

# published (official file comments / README) parameter counts; large/huge/giant: the code definitions (== timm's)
PUBLISHED_PARAMS = {'davit_tiny': 28_360_168, 'davit_small': 49_745_896, 'davit_base': 87_954_408,
                    'davit_large': 196_800_000}
VARIANTS = ['davit_tiny', 'davit_small', 'davit_base', 'davit_large', 'davit_huge', 'davit_giant']


def _meta_params(name, **kwargs):
    with torch.device('meta'):
        return sum(p.numel() for p in timm.create_model(name, **kwargs).parameters())


@pytest.mark.parametrize('name', VARIANTS)
def test_param_count(name):
    ours = _meta_params('zoo_' + name)
    if name in PUBLISHED_PARAMS:
        assert abs(ours - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.01
    else:  # no published count: timm's definition of the same model
        assert ours == _meta_params(name)


def test_names_do_not_shadow_timm():
    with torch.device('meta'):
        assert type(timm.create_model('davit_tiny')).__module__ == 'timm.models.davit'
        assert type(zoo.create_model('davit_tiny')).__module__ == 'zoo.models.davit'


@pytest.fixture(scope='module')
def timm_and_zoo_tiny():
    torch.manual_seed(0)
    ref = timm.create_model('davit_tiny').eval()
    ours = timm.create_model('zoo_davit_tiny').eval()
    ours.load_state_dict(ref.state_dict())  # timm's weights load unchanged (strict)
    return ref, ours


@pytest.mark.parametrize('size', [(224, 224), (150, 190)])
def test_parity_with_timm(timm_and_zoo_tiny, size):
    ref, ours = timm_and_zoo_tiny
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5, diff


def _load_case(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'davit', f'{case}.safetensors')
    if not os.path.exists(path):
        pytest.skip(f'{path} missing')
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kw = json.loads(meta['constructor_kwargs'])
    official = {k: tensors['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    args = dict(depths=kw['depths'], embed_dims=kw['embed_dims'], num_heads=kw['num_heads'],
                window_size=kw['window_size'], mlp_ratio=kw['mlp_ratio'], qkv_bias=kw['qkv_bias'],
                num_classes=kw['num_classes'])
    return tensors, official, args


@pytest.mark.parametrize('case', ['small_224', 'small_150x190'])
def test_parity_with_official(fixtures_dir, case):
    tensors, official, args = _load_case(fixtures_dir, case)
    model = DaVit(**args).eval()
    model.load_state_dict(checkpoint_filter_fn(official, model))
    with torch.no_grad():
        final, stages = model.forward_intermediates(tensors['input'])
        out = model.forward_head(final)
    assert (out - tensors['output']).abs().max().item() <= 1e-4
    for i, feat in enumerate(stages):
        if f'stage.{i}' in tensors:
            expected = tensors[f'stage.{i}']
            tokens = feat.flatten(2).transpose(1, 2)
            assert (tokens - expected).abs().max().item() <= 1e-4 * max(1., expected.abs().max().item())


def test_official_checkpoint_through_pretrained_overlay(fixtures_dir, tmp_path):
    tensors, official, args = _load_case(fixtures_dir, 'small_224')
    path = str(tmp_path / 'official.safetensors')
    save_file({k: v.contiguous() for k, v in official.items()}, path)
    model = timm.create_model('zoo_davit_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=path, num_classes=16),
                              **args).eval()
    with torch.no_grad():
        assert (model(tensors['input']) - tensors['output']).abs().max().item() <= 1e-4
    converted = checkpoint_filter_fn(official)
    assert checkpoint_filter_fn({'state_dict': converted}) == converted  # idempotent, unwraps


_KEY_FILES = {
    'DaViT_tiny': ('zoo_davit_tiny', {}),
    'DaViT_small': ('zoo_davit_small', {}),
    'DaViT_base': ('zoo_davit_base', {}),
    'DaViT_large_window12_384': ('zoo_davit_large', dict(window_size=12)),
}


@pytest.mark.parametrize('variant', sorted(_KEY_FILES))
def test_released_keys_fully_mapped(fixtures_dir, variant):
    path = os.path.join(fixtures_dir, 'davit', f'{variant}_keys.json')
    if not os.path.exists(path):
        pytest.skip(f'{path} missing')
    with open(path) as f:
        official = {k: torch.empty(v, device='meta') for k, v in json.load(f)['keys'].items()}
    name, kwargs = _KEY_FILES[variant]
    with torch.device('meta'):
        model = timm.create_model(name, **kwargs)
    converted = checkpoint_filter_fn(official, model)
    ours = model.state_dict()
    assert len(converted) == len(official)
    assert set(converted) == set(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def _small_model(**kwargs):
    return DaVit(depths=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4), num_classes=10, **kwargs)


@pytest.mark.parametrize('size', [(96, 96), (33, 61), (7, 5)])
def test_any_input_size_and_features(size):
    model = _small_model().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert model(x).shape == (2, 10)
    for feat, info in zip(feats, model.feature_info):
        assert feat.shape[1] == info['num_chs']
        assert feat.shape[-2:] == tuple(-(-s // info['reduction']) for s in size)


def test_features_only_and_grads():
    model = timm.create_model('zoo_davit_tiny', features_only=True, out_indices=(1, 3), depths=(1, 1, 1, 1))
    feats = model(torch.randn(1, 3, 96, 96))
    assert [f.shape[1] for f in feats] == model.feature_info.channels() == [192, 768]
    assert [f.shape[-1] for f in feats] == [96 // r for r in model.feature_info.reduction()]
    small = _small_model()
    small(torch.randn(2, 3, 40, 40)).sum().backward()
    assert all(p.grad is not None for p in small.parameters())


def test_bad_input():
    model = _small_model()
    with pytest.raises(ValueError, match='channels|\\[B, 3, H, W\\]'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError):
        model(torch.randn(3, 64, 64))
