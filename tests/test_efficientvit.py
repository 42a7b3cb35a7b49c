"""EfficientViT (MSRA): parity with timm and with the official Cream fixtures; key mapping; sizes."""
import json
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from zoo.models._builder import count_params
from zoo.models.efficientvit import EfficientVit, checkpoint_filter_fn

import zoo

# published parameter counts (official README, millions); counted: 2.35 / 2.98 / 4.19 / 6.90 / 8.80 / 12.47
PUBLISHED_PARAMS_M = {'m0': 2.3, 'm1': 3.0, 'm2': 4.2, 'm3': 6.9, 'm4': 8.8, 'm5': 12.4}


def _randomize(model, seed=0):
    """Random BN statistics and affine parameters and attention biases over timm's own weight init
    (real checkpoints have non-trivial ones everywhere; the conv weights keep their init scale so the
    random network stays well conditioned)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(('running_mean', 'bn.bias')):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith('bn.weight'):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + 1.0)
            elif name.endswith('attention_biases'):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
    return model


@pytest.mark.parametrize('variant', sorted(PUBLISHED_PARAMS_M))
def test_param_count_matches_published(variant):
    n = count_params(f'zoo_efficientvit_{variant}') / 1e6
    assert abs(n - PUBLISHED_PARAMS_M[variant]) / PUBLISHED_PARAMS_M[variant] < 0.025, n  # README rounds to 0.1M
    # and exactly timm's structure
    assert count_params(f'zoo_efficientvit_{variant}') == sum(
        p.numel() for p in timm.create_model(f'efficientvit_{variant}', pretrained=False).parameters())


@pytest.mark.parametrize('variant,size', [('m0', (224, 224)), ('m0', (193, 250)), ('m2', (160, 96))])
def test_parity_with_timm(variant, size):
    ref = _randomize(timm.create_model(f'efficientvit_{variant}')).eval()
    ours = zoo.create_model(f'efficientvit_{variant}').eval()
    ours.load_state_dict(ref.state_dict())  # timm's layout loads unchanged, strict
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x), atol=1e-5, rtol=0)


def test_training_mode_parity_with_timm():
    """Train mode (batch statistics, no folding) and the gradients agree with timm too.

    Run in float64: with batch statistics the random network is ill-conditioned enough that fp32
    rounding differences in op order grow to ~1e-4 relative; in float64 any real difference shows.
    """
    ref = _randomize(timm.create_model('efficientvit_m0')).double().train()
    ours = zoo.create_model('efficientvit_m0').double().train()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out_r, out_o = ref(x), ours(x)
    torch.testing.assert_close(out_o, out_r, atol=1e-9, rtol=1e-9)
    out_r.sum().backward()
    out_o.sum().backward()
    grads_r = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads_r[name].grad, atol=1e-8, rtol=1e-7, msg=name)


def test_eval_fold_cache_follows_weight_changes():
    """The cached BN fold must never serve stale weights."""
    model = zoo.create_model('efficientvit_m0').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.patch_embed.conv1.bn.running_var.mul_(4.0)   # in-place change of one statistic
        after = model(x)
    assert not torch.allclose(before, after)
    model.train()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), after)
        # dtype / device moves swap parameter storage without a version bump: the fold must follow
        model.double()
        torch.testing.assert_close(model(x.double()).float(), after, atol=1e-4, rtol=1e-4)
        model.float()
        torch.testing.assert_close(model(x), after)


def _fixture(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'efficientvit', f'{case}.safetensors')
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    sd = {k[len('state_dict.'):]: v for k, v in tensors.items() if k.startswith('state_dict.')}
    return tensors, json.loads(meta['constructor_kwargs']), sd


def _model_from_official_kwargs(kw):
    if not kw.get('embed_dim'):
        return zoo.create_model('efficientvit_m0', num_classes=kw['num_classes'])
    # Cream's down_ops[i] is the transition *after* stage i; ours downsamples at the start of stages 1..
    assert [d[0] for d in kw['down_ops']][:-1] == ['subsample'] * (len(kw['embed_dim']) - 1)
    return EfficientVit(
        img_size=kw['img_size'], in_chans=kw['in_chans'], num_classes=kw['num_classes'], embed_dim=kw['embed_dim'],
        key_dim=kw['key_dim'], depth=kw['depth'], num_heads=kw['num_heads'], window_size=kw['window_size'],
        kernels=kw['kernels'])


@pytest.mark.parametrize('case', ['m0_224', 'small_192'])
def test_parity_with_official_fixtures(fixtures_dir, case):
    tensors, kw, official_sd = _fixture(fixtures_dir, case)
    model = _model_from_official_kwargs(kw).eval()
    model.load_state_dict(checkpoint_filter_fn({'model': official_sd}, model))
    x = tensors['input']
    with torch.no_grad():
        out, stages = model.forward_intermediates(x)
        logits = model.forward_head(out)
    assert (logits - tensors['output']).abs().max() <= 1e-4
    for i, feat in enumerate(stages):
        assert (feat - tensors[f'stage.{i}']).abs().max() <= 1e-4, f'stage {i}'


@pytest.mark.parametrize('variant', [f'm{i}' for i in range(6)])
def test_official_keys_all_mapped(fixtures_dir, variant):
    """Every key of every released Cream checkpoint converts onto our model, shapes included."""
    with open(os.path.join(fixtures_dir, 'efficientvit', f'efficientvit_{variant}_keys.json')) as f:
        keys = json.load(f)['keys']
    with torch.device('meta'):
        model = zoo.create_model(f'efficientvit_{variant}')
    official = {k: torch.empty(shape, device='meta') for k, shape in keys.items()}
    converted = checkpoint_filter_fn({'model': official}, model)
    target = model.state_dict()
    assert set(converted) == set(target), (set(converted) ^ set(target))
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(target[k].shape), k


def test_bad_inputs_raise():
    model = zoo.create_model('efficientvit_m0').eval()
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        model(torch.randn(1, 1, 64, 64))
    assert model(torch.randn(1, 3, 8, 64)).shape[0] == 1  # SAME/ceil arithmetic: any size >= 1 px (issue 18.2)
