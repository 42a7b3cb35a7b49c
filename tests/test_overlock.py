"""OverLoCK: parity with the official code (fixtures), weights in both official forms, re-parameterisation,
parameter counts, features and input sizes."""
import json
import math
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from zoo.models.overlock import OverLoCK, checkpoint_filter_fn

import zoo  # noqa: F401  (registers the models)

CASES = ['small_128', 'small_96x160']
VARIANTS = ['xt', 't', 's', 'b']
# the official OverLoCK module keeps a training-only auxiliary head (deep supervision on the overview
# context, never used at inference); this implementation drops it, so its parameters are the official
# count minus the aux head
AUX_PREFIX = 'aux_head.'


def _load_case(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'overlock', f'{case}.safetensors')
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kwargs = json.loads(meta['constructor_kwargs'])
    for unused in ('in_chans', 'use_gemm', 'use_ds'):  # use_gemm: optional CUDA conv; use_ds: the aux head
        kwargs.pop(unused)
    official = {k: tensors['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    return tensors, kwargs, official


def _build(kwargs, official, **overrides):
    model = OverLoCK(**dict(kwargs, **overrides)).eval()
    model.load_state_dict(checkpoint_filter_fn(official, model), strict=True)
    return model


@pytest.mark.parametrize('case', CASES)
def test_parity_with_official(fixtures_dir, case):
    t, kwargs, official = _load_case(fixtures_dir, case)
    model = _build(kwargs, official)
    with torch.no_grad():
        out = model(t['input'])
        assert (out - t['output']).abs().max().item() <= 1e-4
        feats = model.forward_intermediates(t['input'], intermediates_only=True)
        for i, feat in enumerate(feats):
            if f'stage.{i}' in t:  # the official stride-16 stage map is x alone: the first C2 channels here
                ref = t[f'stage.{i}']
                assert (feat[:, :ref.shape[1]] - ref).abs().max().item() <= 1e-4
        # deploy form: the merged kernels give the same numbers
        model.reparameterize()
        assert (model(t['input']) - t['output']).abs().max().item() <= 1e-4


def _to_official_layout(sd):
    """Our state dict -> the official key layout (inverse of the filter's renames), for deploy-form files."""
    out = {}
    for k, v in sd.items():
        for ours, theirs in (('head.proj.', 'head.0.'), ('head.norm.', 'head.1.'), ('head.fc.', 'head.4.')):
            if k.startswith(ours):
                k = theirs + k[len(ours):]
        if k.endswith(('.weight', '.bias')) and v.dim() == 1 and ('fusion.4.' in k or 'proj.7.' in k or 'mlp.3.' in k):
            k = k.rsplit('.', 1)[0] + ('.gamma' if k.endswith('.weight') else '.beta')
            v = v.reshape(1, -1, 1, 1)
        out[k] = v
    return out


def test_both_checkpoint_forms_load_into_both_model_forms(fixtures_dir):
    t, kwargs, official = _load_case(fixtures_dir, 'small_128')
    # train-form checkpoint -> deploy-form model: the filter folds the branches itself
    deploy_model = _build(kwargs, official, deploy=True)
    with torch.no_grad():
        assert (deploy_model(t['input']) - t['output']).abs().max().item() <= 1e-4
    # deploy-form checkpoint (official layout, as the *_reparam.pth releases) -> a train-form model
    deploy_sd = _to_official_layout(deploy_model.state_dict())
    assert not any('origin_bn' in k or 'dil_conv' in k for k in deploy_sd)
    model = OverLoCK(**kwargs).eval()
    model.load_state_dict(checkpoint_filter_fn(deploy_sd, model), strict=True)
    with torch.no_grad():
        assert (model(t['input']) - t['output']).abs().max().item() <= 1e-4
    # the filter is idempotent on converted state dicts
    again = checkpoint_filter_fn(model.state_dict(), model)
    assert again.keys() == model.state_dict().keys()


def test_pretrained_file_loads_and_changes_output(fixtures_dir, tmp_path):
    """``pretrained=True`` with a local official checkpoint really loads it (the official *_reparam factories
    silently skip loading for S and B)."""
    t, kwargs, official = _load_case(fixtures_dir, 'small_128')
    arch = dict(kwargs, kernel_size=tuple(kwargs['kernel_size']))
    path = tmp_path / 'official.pth'
    torch.save({'state_dict': official}, path)  # wrapped, as mmengine checkpoints are
    overlay = dict(file=str(path), num_classes=kwargs['num_classes'])
    torch.manual_seed(0)
    random = timm.create_model('overlock_xt', **arch).eval()
    loaded = timm.create_model('overlock_xt', pretrained=True, pretrained_cfg_overlay=overlay, **arch).eval()
    with torch.no_grad():
        out_random, out_loaded = random(t['input']), loaded(t['input'])
    assert (out_loaded - t['output']).abs().max().item() <= 1e-4
    assert (out_random - t['output']).abs().max().item() > 1e-2


def _official_param_count(keys):
    return sum(math.prod(s) for k, s in keys.items()
               if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))


# README: 16 / 33 / 56 / 95 M (the deploy-form counts of the official code, truncated to whole millions)
PUBLISHED_M = dict(xt=16, t=33, s=56, b=95)


@pytest.mark.parametrize('variant', VARIANTS)
def test_released_keys_and_param_counts(fixtures_dir, variant):
    """Every official key (train and deploy form) converts, nothing missing or unexpected; parameter counts
    equal the official code's minus the aux head, in both forms. Built on the meta device."""
    with torch.device('meta'):
        model = timm.create_model(f'overlock_{variant}')
    counts = {}
    for form in ('', '_reparam'):
        if form:
            model.reparameterize()
        keys = json.load(open(os.path.join(fixtures_dir, 'overlock', f'overlock_{variant}{form}_keys.json')))['keys']
        converted = checkpoint_filter_fn({k: torch.empty(s, device='meta') for k, s in keys.items()}, model)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in converted.items()} == expected
        aux = {k: s for k, s in keys.items() if k.startswith(AUX_PREFIX)}
        assert len(keys) - len(aux) == len(expected)
        counts[form] = sum(p.numel() for p in model.parameters())
        assert counts[form] == _official_param_count(keys) - _official_param_count(aux)
    # published (whole millions): the deploy form is within 3% (XT: 16.45M vs "16M")
    assert abs(counts['_reparam'] / 1e6 - PUBLISHED_M[variant]) / PUBLISHED_M[variant] < 0.03


def test_timm_reparameterize_model_and_features():
    torch.manual_seed(0)
    model = timm.create_model('overlock_xt', depth=(1, 1, 1, 1), sub_depth=(1, 1), embed_dim=(8, 16, 32, 32),
                              sub_num_heads=(2, 2), projection=16, num_classes=5).eval()
    for m in model.modules():  # non-trivial BN statistics so the fold is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.1)
    x = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        ref = model(x)
        merged = timm.utils.reparameterize_model(model)
        assert (merged(x) - ref).abs().max().item() <= 1e-4
        assert not any('dil_conv' in k for k in merged.state_dict())
    feat = timm.create_model('overlock_xt', features_only=True, depth=(1, 1, 1, 1), sub_depth=(1, 1),
                             embed_dim=(8, 16, 32, 32), sub_num_heads=(2, 2), projection=16).eval()
    assert feat.feature_info.reduction() == [4, 8, 16, 32]
    assert feat.feature_info.channels() == [8, 16, 32 + 8, 32 + 8]  # dense layout: C2 + C3/4, C3 + C3/4
    with torch.no_grad():
        outs = feat(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [8, 16, 40, 40]
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_bad_input_raises():
    model = timm.create_model('overlock_xt', depth=(1, 1, 1, 1), sub_depth=(1, 1), embed_dim=(8, 16, 32, 32),
                              sub_num_heads=(2, 2), projection=16).eval()
    with pytest.raises(ValueError, match='expects'):
        model(torch.randn(1, 1, 64, 64))


def test_export_path_matches_eager_in_both_regimes(capture_paths):
    """Under export ContMix always enlarges/pools with branch-free formulas (symbolic sizes): same numbers as eager,
    both where the map is smaller than the kernel (eager enlarges) and where it is not (eager does nothing)."""
    import torch.nn.functional as F
    from zoo.models import overlock
    for n_in, n_out in ((13, 7), (7, 7), (9, 4), (5, 3), (30, 12)):
        x = torch.randn(2, 3, n_in, n_in + 2)
        got = overlock._adaptive_avg_pool2d_graph(x, (n_out, n_out + 1))
        assert (got - F.adaptive_avg_pool2d(x, (n_out, n_out + 1))).abs().max().item() <= 1e-6
    for K in (7, 13):  # the kernels ContMix uses
        for H in range(1, 3 * K):
            for W in range(1, 3 * K):
                official = ((K, int(K / H * W)) if H < W else (int(K / W * H), K)) if min(H, W) < K else (H, W)
                got = overlock._enlarged_size(H, W, K)
                if got != official:  # only the documented float artefact: K * L / s whole, rounded below
                    s, L = min(H, W), max(H, W)
                    assert K * L % s == 0 and max(got) == max(official) + 1 and min(got) == min(official), (K, H, W)
    torch.manual_seed(0)
    model = timm.create_model('overlock_xt', depth=(1, 1, 1, 1), sub_depth=(1, 1), embed_dim=(8, 16, 32, 32),
                              sub_num_heads=(2, 2), projection=16, num_classes=5).eval()
    for size in ((64, 96), (224, 240)):  # stage-3/4 maps below the 13/7 kernels, then not
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x)
            with capture_paths(overlock):
                got = model(x)
        assert (got - ref).abs().max().item() <= 1e-5, size
