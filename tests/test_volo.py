"""VOLO: parity with timm's volo (identical weights) and with the official code (fixtures), key layout of every
released checkpoint, parameter counts, fixed / dynamic input sizes, the feature pyramid, token labelling."""
import json
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from zoo.models.volo import VOLO, checkpoint_filter_fn

import zoo  # noqa: F401  (registers the zoo models)

# parameter counts of the official models (measured, shared/reference/volo.md); published: 27M/59M/86M/193M/296M
PUBLISHED_PARAMS = {'d1': 26.63e6, 'd2': 58.68e6, 'd3': 86.33e6, 'd4': 192.96e6, 'd5': 295.46e6}
VARIANTS = ['volo_d1_224', 'volo_d1_384', 'volo_d2_224', 'volo_d2_384', 'volo_d3_224', 'volo_d3_448',
            'volo_d4_224', 'volo_d4_448', 'volo_d5_224', 'volo_d5_448', 'volo_d5_512']


def _meta_model(name, **kwargs):
    with torch.device('meta'):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize('name', VARIANTS)
def test_param_count(name):
    ours = sum(p.numel() for p in _meta_model('zoo_' + name).parameters())
    published = PUBLISHED_PARAMS[name.split('_')[1]]
    assert abs(ours - published) / published < 0.01


@pytest.fixture(scope='module')
def timm_and_zoo_d1():
    torch.manual_seed(0)
    ref = timm.create_model('volo_d1_224').eval()
    ours = timm.create_model('zoo_volo_d1_224').eval()
    ours.load_state_dict(ref.state_dict())  # timm's weights load unchanged (strict)
    return ref, ours


def test_parity_with_timm_224(timm_and_zoo_d1):
    ref, ours = timm_and_zoo_d1
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5
        assert (ours.forward_features(x) - ref.forward_features(x)).abs().max().item() <= 1e-5 * 10  # tokens ~O(10)


def test_parity_with_timm_other_size(timm_and_zoo_d1):
    ref224, _ = timm_and_zoo_d1
    ref = timm.create_model('volo_d1_224', img_size=160).eval()
    ours = timm.create_model('zoo_volo_d1_224', img_size=160).eval()
    ref.load_state_dict(ref224.state_dict() | {'pos_embed': torch.randn(1, 10, 10, 384)})
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5


def _official_model(fixtures_dir, case):
    path = os.path.join(fixtures_dir, 'volo', f'{case}.safetensors')
    if not os.path.exists(path):
        pytest.skip(f'{path} missing')
    tensors = load_file(path)
    with safe_open(path, 'pt') as f:
        meta = f.metadata()
    kw = json.loads(meta['constructor_kwargs'])
    official = {k: tensors['state_dict.' + k] for k in json.loads(meta['state_dict_keys_in_order'])}
    model = VOLO(
        layers=kw['layers'], img_size=kw['img_size'], in_chans=kw['in_chans'], num_classes=kw['num_classes'],
        patch_size=kw['patch_size'], stem_hidden_dim=kw['stem_hidden_dim'], embed_dims=kw['embed_dims'],
        num_heads=kw['num_heads'], downsamples=kw['downsamples'], outlook_attention=kw['outlook_attention'],
        mlp_ratio=kw['mlp_ratios'], qkv_bias=kw['qkv_bias'], post_layers=kw['post_layers'],
        use_aux_head=kw['return_dense'], use_mix_token=kw['mix_token'], pooling_scale=kw['pooling_scale'],
        outlook_kernel_size=kw['out_kernel'], outlook_stride=kw['out_stride'], outlook_padding=kw['out_padding'])
    model.load_state_dict(checkpoint_filter_fn({'state_dict': official}, None))
    return model.eval(), tensors


@pytest.mark.parametrize('case', ['small_224', 'small_160'])
def test_parity_with_official(fixtures_dir, case):
    model, tensors = _official_model(fixtures_dir, case)
    with torch.no_grad():
        assert (model(tensors['input']) - tensors['output']).abs().max().item() <= 1e-4
        x = model._embed(tensors['input'])
        stage_of_block = {0: 0, 2: 1, 3: 2, 4: 3}
        for idx, block in enumerate(model.network):
            x = model._run_block(idx, block, x)
            key = f'stage.{stage_of_block.get(idx)}'
            if key in tensors:
                assert (x - tensors[key]).abs().max().item() <= 1e-4 * max(1., tensors[key].abs().max().item())


@pytest.mark.parametrize('name', VARIANTS)
def test_released_keys_fully_mapped(fixtures_dir, name):
    path = os.path.join(fixtures_dir, 'volo', f'{name}_keys.json')
    if not os.path.exists(path):
        pytest.skip(f'{path} missing')
    with open(path) as f:
        official = {k: tuple(v) for k, v in json.load(f)['keys'].items()}
    model = _meta_model('zoo_' + name)
    converted = checkpoint_filter_fn({'state_dict': {k: torch.empty(s, device='meta') for k, s in official.items()}})
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _tiny(**kwargs):
    args = dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 32, 32), num_heads=(2, 4, 4, 4), stem_hidden_dim=8,
                num_classes=10, img_size=64)
    return VOLO(**dict(args, **kwargs))


def test_pyramid_features():
    model = _tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)]
    assert [i['reduction'] for i in model.feature_info] == [4, 8, 16, 32]
    fo = timm.create_model('zoo_volo_d1_224', features_only=True, layers=(1, 1, 1, 1), img_size=64)
    assert [f.shape[1] for f in fo(x)] == fo.feature_info.channels() == [192, 192, 384, 384]
    fo = timm.create_model('zoo_volo_d1_224', features_only=True, out_indices=(0, 1), layers=(1, 1, 1, 1), img_size=64)
    assert [f.shape[-1] for f in fo(x)] == [16, 8]


def test_input_size_checks_and_dynamic_size():
    model = _tiny().eval()
    with pytest.raises(ValueError, match='built for 64x64'):
        model(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match='\\[B, 3, H, W\\]'):
        model(torch.randn(1, 4, 64, 64))
    dyn = _tiny(dynamic_img_size=True).eval()
    dyn.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(dyn(x), model(x), atol=1e-6)  # same grid: the embedding is used as is
        assert dyn(torch.randn(1, 3, 75, 100)).shape == (1, 10)
        feats = dyn.forward_intermediates(torch.randn(1, 3, 75, 100), intermediates_only=True)
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-75 // r), -(-100 // r)) for r in (4, 8, 16, 32)]


def test_token_labelling_train_forward_and_grads():
    model = _tiny(use_mix_token=True).train()
    cls_logits, aux, box = model.forward_train(torch.randn(2, 3, 64, 64))
    assert cls_logits.shape == (2, 10) and aux.shape == (2, 16, 10) and len(box) == 4
    (cls_logits.sum() + aux.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert torch.equal(model.forward_train(x), model(x))


def test_official_checkpoint_through_pretrained_overlay(fixtures_dir, tmp_path):
    model, tensors = _official_model(fixtures_dir, 'small_160')
    path = str(tmp_path / 'volo_official.pth.tar')
    torch.save({'state_dict': model.state_dict(), 'epoch': 1}, path)
    loaded = timm.create_model(
        'zoo_volo_d1_224', pretrained=True, pretrained_cfg_overlay=dict(file=path, num_classes=16), img_size=160,
        layers=(1, 1, 1, 1), embed_dims=(16, 32, 32, 32), num_heads=(2, 4, 4, 4), stem_hidden_dim=16).eval()
    with torch.no_grad():
        assert (loaded(tensors['input']) - tensors['output']).abs().max().item() <= 1e-4
