"""The model battery: every registered zoo model gets these checks (as timm's tests/test_models.py).

Parametrised over ``zoo.list_models()``, so a family is covered the moment it is registered.
Models over ``FAST_PARAM_LIMIT`` parameters run only with ``-m slow``. Inputs are small: the
cfg's ``min_input_size`` when it has one (else 96x96, or ``input_size`` for fixed-size models).

Models that are not classifiers (``is_classifier = False`` on the class, e.g. CATANet's
super-resolution network) skip the checks that need a classification head or feature pyramid.
"""
import os

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from zoo.models._builder import count_params

import zoo

FAST_PARAM_LIMIT = 30e6
TEST_SIZE = 96
IMAGE_TO_IMAGE_TEST_SIZE = 32  # super-resolution models run at full resolution: keep their inputs small


def _marks(name):
    return [pytest.mark.slow] if count_params(name) > FAST_PARAM_LIMIT else []


ALL_MODELS = [pytest.param(n, marks=_marks(n), id=n) for n in zoo.list_models()]


def _cfg(model):
    return model.pretrained_cfg


def _input_size(model):
    cfg = _cfg(model)
    if cfg.get('fixed_input_size'):
        return cfg['input_size'][1:]
    size = TEST_SIZE if _is_classifier(model) else IMAGE_TO_IMAGE_TEST_SIZE
    min_size = cfg.get('min_input_size')
    if min_size:
        return tuple(max(size, s) for s in min_size[1:])
    return size, size


def _x(model, batch=2, size=None, seed=0):
    h, w = size or _input_size(model)
    in_chans = getattr(model, 'in_chans', 3)
    return torch.randn(batch, in_chans, h, w, generator=torch.Generator().manual_seed(seed))


def _is_classifier(model):
    return getattr(model, 'is_classifier', True)


def _create(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs)


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_forward(name):
    model = _create(name).eval()
    x = _x(model)
    with torch.no_grad():
        out = model(x)
    assert out.shape[0] == x.shape[0]
    assert not torch.isnan(out).any()
    if _is_classifier(model):
        assert out.shape == (x.shape[0], model.num_classes)
    # grad checkpointing must not change the result
    model.set_grad_checkpointing(True)
    with torch.no_grad():
        out_cp = model(x)
    torch.testing.assert_close(out_cp, out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_backward(name):
    kwargs = dict(num_classes=7) if _is_classifier(_create(name, pretrained=False).eval()) else {}
    model = _create(name, **kwargs).train()
    x = _x(model)
    out = model(x)
    out.float().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without a gradient: {no_grad[:10]}'
    assert not torch.isnan(out).any()
    if kwargs:
        assert out.shape[-1] == 7


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_default_cfg(name):
    model = _create(name).eval()
    cfg = _cfg(model)
    sd = model.state_dict()
    if cfg.get('first_conv'):
        first = cfg['first_conv'] if isinstance(cfg['first_conv'], str) else cfg['first_conv'][0]
        assert first + '.weight' in sd, f'first_conv {first!r} not in the state_dict'
    if not _is_classifier(model):
        return
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    classifier = cfg['classifier'] if isinstance(cfg['classifier'], str) else cfg['classifier'][0]
    assert classifier + '.weight' in sd, f'classifier {classifier!r} not in the state_dict'
    assert model.get_classifier() is not None

    # at the cfg's input size forward_features has the cfg's pool_size (big inputs are slow: only fast models)
    if count_params(name) <= FAST_PARAM_LIMIT / 3:
        x = torch.randn(1, *cfg['input_size'])
        with torch.no_grad():
            feats = model.forward_features(x)
        if getattr(model, 'output_fmt', 'NCHW') == 'NCHW' and feats.dim() == 4:
            assert feats.shape[1] == model.num_features
            if cfg.get('pool_size'):
                assert tuple(feats.shape[-2:]) == tuple(cfg['pool_size'])

    x = _x(model, batch=1)
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model.num_classes == 0
        out = model(x)
        assert out.shape == (1, model.head_hidden_size)
        model.reset_classifier(0, '')
        out = model(x)
        assert out.dim() == 4 and out.shape[1] == model.num_features


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_features_only(name):
    model = _create(name).eval()
    if not _is_classifier(model):
        pytest.skip('not a feature-pyramid backbone')
    x = _x(model, batch=1)
    info = model.feature_info
    n = len(info)
    for out_indices in (None, (n - 2, n - 1)):
        kwargs = {} if out_indices is None else dict(out_indices=out_indices)
        feat_model = _create(name, features_only=True, **kwargs).eval()
        with torch.no_grad():
            feats = feat_model(x)
        expected = list(range(n)) if out_indices is None else list(out_indices)
        # timm's default out_indices may skip a stem level: compare to what the wrapper declares
        channels = feat_model.feature_info.channels()
        reductions = feat_model.feature_info.reduction()
        assert len(feats) == len(channels) and (out_indices is None or len(feats) == len(expected))
        for f, c, r in zip(feats, channels, reductions):
            assert f.shape[1] == c
            assert f.shape[-2] <= -(-x.shape[-2] // r) + 1 and f.shape[-1] <= -(-x.shape[-1] // r) + 1
            assert not torch.isnan(f).any()


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_forward_intermediates(name):
    model = _create(name).eval()
    if not _is_classifier(model):
        pytest.skip('not a feature-pyramid backbone')
    x = _x(model, batch=1)
    with torch.no_grad():
        final, inters = model.forward_intermediates(x)
        feats = model.forward_features(x)
        only = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(inters) == len(model.feature_info)
    for f, info in zip(inters, model.feature_info):
        assert f.shape[1] == info['num_chs']
    torch.testing.assert_close(final, feats, rtol=1e-5, atol=1e-5)
    assert len(only) == 1
    torch.testing.assert_close(only[0], inters[-1])


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_state_dict_roundtrip_and_local_pretrained(name, tmp_path):
    model = _create(name).eval()
    x = _x(model, batch=1)
    with torch.no_grad():
        expected = model(x)
    path = os.path.join(tmp_path, 'weights.safetensors')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    # plain round trip
    other = _create(name).eval()
    other.load_state_dict(load_file(path))
    # timm's local-file pretrained loading, through the family's checkpoint_filter_fn
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x), expected)
        torch.testing.assert_close(loaded(x), expected)


@pytest.mark.parametrize('name', ALL_MODELS)
def test_model_rejects_bad_input(name):
    model = _create(name).eval()
    in_chans = getattr(model, 'in_chans', 3)
    h, w = _input_size(model)
    with pytest.raises(ValueError):
        with torch.no_grad():
            model(torch.randn(1, in_chans + 1, h, w))
