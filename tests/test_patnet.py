"""PATNet: parity with the official PartialNet code (fixtures), key coverage, param counts, BN fusion, inputs."""
import glob
import json
import os
import re

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from zoo.models.patnet import PATNet, checkpoint_filter_fn

import zoo  # noqa: F401  (registers the models)

# parameter counts of the official code for each configuration (../shared/reference/patnet.md §4, measured by
# running haiduo/PartialNet @ 679cfc0); the papers publish no table, accuracies only as a plot
OFFICIAL_PARAMS = {
    'patnet_t0': 3.49e6, 'patnet_t1': 6.14e6, 'patnet_t2': 12.27e6, 'patnet_s': 28.01e6, 'patnet_m': 59.18e6,
    'patnet_l': 100.64e6, 'patnet_det_s': 41.36e6, 'patnet_det_m': 72.31e6, 'patnet_det_l': 126.83e6,
}
KEYS_FILE_TO_MODEL = {f'partialnet_{v}': f'patnet_{v}' for v in ('t0', 't1', 't2', 's', 'm', 'l')}


def _load_case(path):
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kwargs = json.loads(meta['constructor_kwargs'])
    official_sd = {k: tensors['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    return tensors, kwargs, official_sd


def _zoo_kwargs(official):
    """Official PartialNet constructor kwargs -> PATNet kwargs."""
    assert official['n_div'] == 4 and not official['auto_div'] and official['patnet_t0']
    return dict(
        embed_dim=official['embed_dim'], depths=tuple(official['depths']), mlp_ratio=official['mlp_ratio'],
        n_div=official['n_div'], feature_dim=official['feature_dim'], num_classes=official['num_classes'],
        act_layer=official['act_layer'].lower(), use_spatial_attn=official['use_spatial_attn'],
        layer_scale_init_value=official['layer_scale_init_value'], num_heads=4,
    )


def _case_paths(fixtures_dir):
    paths = sorted(glob.glob(os.path.join(fixtures_dir, 'patnet', '*.safetensors')))
    if not paths:
        pytest.skip('no PATNet fixtures')
    return paths


def _build_from_case(path):
    tensors, kwargs, official_sd = _load_case(path)
    model = PATNet(**_zoo_kwargs(kwargs)).eval()
    model.load_state_dict(checkpoint_filter_fn(official_sd, model))
    return model, tensors


@pytest.mark.parametrize('grad', [False, True], ids=['inference', 'autograd'])
def test_parity_with_official(fixtures_dir, grad):
    for path in _case_paths(fixtures_dir):
        model, t = _build_from_case(path)
        with torch.set_grad_enabled(grad):
            final, stages = model.forward_intermediates(t['input'])
            out = model.forward_head(final)
        diff = (out - t['output']).abs().max().item()
        assert diff <= 1e-4, f'{os.path.basename(path)}: logits max abs diff {diff}'
        for i, s in enumerate(stages):
            if f'stage.{i}' in t:
                d = (s - t[f'stage.{i}']).abs().max().item()
                assert d <= 1e-4, f'{os.path.basename(path)}: stage {i} max abs diff {d}'


def test_fuse_is_numerically_equal(fixtures_dir):
    for path in _case_paths(fixtures_dir):
        model, t = _build_from_case(path)
        with torch.no_grad():
            ref = model(t['input'])
            n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
            model.fuse()
            n_bn_fused = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
            fused = model(t['input'])
        assert n_bn_fused < n_bn
        assert (fused - ref).abs().max().item() <= 1e-4
        assert (fused - t['output']).abs().max().item() <= 1e-4


@pytest.mark.parametrize('keys_name', sorted(KEYS_FILE_TO_MODEL))
def test_official_keys_fully_mapped(fixtures_dir, keys_name):
    path = os.path.join(fixtures_dir, 'patnet', f'{keys_name}_keys.json')
    if not os.path.exists(path):
        pytest.skip(f'{path} absent')
    with open(path) as f:
        official = json.load(f)['keys']
    with torch.device('meta'):
        model = timm.create_model(KEYS_FILE_TO_MODEL[keys_name])
    fake_sd = {k: torch.empty(shape, device='meta') for k, shape in official.items()}
    converted = checkpoint_filter_fn(fake_sd, model)
    ours = model.state_dict()
    assert set(converted) == set(ours), (set(converted) ^ set(ours))
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(ours[k].shape), k
    # idempotent on an already-converted (zoo) state dict
    assert set(checkpoint_filter_fn(converted, model)) == set(ours)


def test_filter_unwraps_and_drops_detection_norms():
    model = PATNet(embed_dim=8, depths=(1, 1, 1, 1), num_classes=4, feature_dim=16)
    zoo_sd = model.state_dict()
    official = {}
    for k, v in zoo_sd.items():  # rebuild an official-layout dict from the zoo one
        k = k.replace('conv_head.', 'avgpool_pre_head.1.').replace('classifier.', 'head.')
        k = re.sub(r'^stages\.(\d+)\.downsample\.', lambda m: f'stages.{2 * int(m.group(1)) - 1}.', k)
        k = re.sub(r'^stages\.(\d+)\.blocks\.', lambda m: f'stages.{2 * int(m.group(1))}.blocks.', k)
        official[k] = v
    official['norm0.weight'] = torch.ones(8)
    for wrapped in ({'model': official}, {'state_dict': official}, official):
        converted = checkpoint_filter_fn(wrapped, model)
        assert set(converted) == set(zoo_sd)
        assert all(torch.equal(converted[k], zoo_sd[k]) for k in zoo_sd)


@pytest.mark.parametrize('name', sorted(OFFICIAL_PARAMS))
def test_param_counts(name):
    with torch.device('meta'):
        model = timm.create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - OFFICIAL_PARAMS[name]) / OFFICIAL_PARAMS[name] < 0.01, n
    assert timm.is_model('zoo_' + name)


def test_inference_buffers_match_autograd_path():
    """The no-cat inference path (out= slices) equals the split/cat path, also for channels_last inputs."""
    torch.manual_seed(0)
    model = timm.create_model('patnet_t1', num_classes=10).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, .1)
            m.running_var.uniform_(.5, 1.5)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        fast = model(x)
        fast_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    ref = model(x).detach()
    assert (fast - ref).abs().max().item() <= 1e-4
    assert (fast_cl - ref).abs().max().item() <= 1e-4


def test_bad_inputs_raise():
    model = PATNet(embed_dim=8, depths=(1, 1, 1, 1), num_classes=4, feature_dim=16).eval()
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='at least'):
        model(torch.randn(1, 3, 16, 64))
    out = model(torch.randn(1, 3, 32, 48))  # smallest legal size, non-square
    assert out.shape == (1, 4) and torch.isfinite(out).all()


def test_irpe_buckets():
    from zoo.models.patnet import _euclidean_buckets_cpu
    ids = _euclidean_buckets_cpu(30, 30, 20., 40., 160.)
    assert ids.min().item() == 40 and ids.max().item() <= 80
    assert ids[0, 1].item() == 41  # distance 1 -> bucket beta + 1
    # distance 29*sqrt(2) ~ 41 -> 20 + ln(41/20)/ln(8)*20 = 26.9 -> 27 (+40)
    assert ids[0, 30 * 30 - 1].item() == 67
