"""Every shipped OpenMMLab config (configs/mmdet/<family>/*.py, configs/mmseg/<family>/*.py) builds and runs.

For each config: the numbers it writes (neck / head in_channels, strides) agree with its own backbone
(``complete_config`` checks them on the meta device); then its backbone is swapped for the family's smallest
variant, keeping every other backbone option (``model_kwargs``, ``out_norm``, ``out_indices``, ...), the
detector / segmentor is built from the config, runs one forward on a small image, and the config's
optimizer wrapper and schedulers build on it. Configs that differ only in the size variant (e.g. a BiFormer-B
child of the BiFormer-S config) give the same network once swapped: it is built and run once and reused.
A second test checks that every dense-prediction family registered in the zoo ships configs for both tasks.
"""
import contextlib
import functools
import glob
import json
import os
import re
from unittest import mock

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

import timm  # noqa: E402

import zoo  # noqa: E402
import zoo.mm  # noqa: E402  (installs the mmcv-lite fallback before mmdet.models / mmseg.models load)
from zoo.mm.config_utils import complete_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs')
FAMILY_CONFIGS = sorted(p for p in glob.glob(os.path.join(CONFIGS, 'mm*', '*', '*.py')) if '_base_' not in p)
# 32 x 5: the stride-8..32 maps (20, 10, 5) are not multiples of the region / window counts and sizes the
# configs set (BiFormer n_win 8 / 16, LITv2 local_ws 2 / 4), so the backbones' padding paths run
TEST_SIZE = 160
_BUILT = {}  # swapped model config (drop_path_rate aside) -> the model built and run from it


@pytest.fixture(scope='module', autouse=True)
def _index_mm_metafiles():
    """mmengine re-reads every mmdet / mmseg metafile (~1000 YAML files) for each ``mmdet::`` base it resolves;
    read them once per package instead (the lookup itself is mmengine's)."""
    import mmengine.config.utils as config_utils
    from mmengine.fileio import load

    @functools.lru_cache(maxsize=None)
    def index(package_path):
        found = {}
        for meta_path in load(os.path.join(package_path, '.mim', 'model-index.yml'))['Import']:
            for model_cfg in load(os.path.join(package_path, '.mim', meta_path))['Models']:
                if 'Config' in model_cfg:
                    found.setdefault(model_cfg['Config'].partition('/')[-1], model_cfg)
        return found

    def cfg_metainfo(package_path, cfg_path):
        found = index(package_path)
        if cfg_path not in found:
            raise ValueError(f'{cfg_path} is not a metafile config')  # mmengine then treats it as a base file
        return found[cfg_path]

    original = config_utils._get_cfg_metainfo
    config_utils._get_cfg_metainfo = cfg_metainfo
    yield
    config_utils._get_cfg_metainfo = original


def _family(model_name: str) -> str:
    """The zoo family (the timm registry's module name) of a zoo model."""
    from timm.models._registry import _model_to_module
    return _model_to_module[zoo.resolve_model_name(model_name)]


_INIT_FUNCTIONS = ('normal_', 'uniform_', 'trunc_normal_', 'kaiming_uniform_', 'kaiming_normal_', 'xavier_uniform_',
                   'xavier_normal_', 'constant_', 'zeros_', 'ones_', 'orthogonal_')


@contextlib.contextmanager
def _meta_without_init():
    """The meta device with weight initialisers skipped: meta tensors hold no values, but initialising them still
    runs every op through Python decompositions (5-7x the cost of the build). Only for meta builds."""
    import timm.layers.weight_init as timm_init
    keep = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    with contextlib.ExitStack() as stack:
        for name in _INIT_FUNCTIONS:
            stack.enter_context(mock.patch.object(torch.nn.init, name, keep))
        stack.enter_context(mock.patch.object(timm_init, '_trunc_normal_', keep))
        stack.enter_context(torch.device('meta'))
        yield


def _complete(cfg):
    """``complete_config`` (its backbone builds are on the meta device) without the initialisers' cost."""
    with _meta_without_init():
        complete_config(cfg)


@functools.lru_cache(maxsize=None)
def _size_and_layout(name: str):
    """(parameter count, parameter names with the numbers blanked) of a variant, built on the meta device."""
    with _meta_without_init():
        model = timm.create_model(name)
    layout = frozenset(re.sub(r'\d+', '#', n) for n in model.state_dict())
    return sum(p.numel() for p in model.parameters()), layout


@functools.lru_cache(maxsize=None)
def _smallest_variant(model_name: str) -> str:
    """The family's smallest variant with the same kinds of parameters as ``model_name`` (so e.g. a MOAT config keeps
    its relative position tables and a PATNet detection config its PAT_sp blocks; only depths and widths shrink)."""
    layout = _size_and_layout(zoo.resolve_model_name(model_name))[1]
    variants = [n for n in timm.list_models(module=_family(model_name)) if n.startswith('zoo_')]
    same_kind = [n for n in variants if _size_and_layout(n)[1] == layout]
    return min(same_kind, key=lambda n: (_size_and_layout(n)[0], n))


def _clear_backbone_numbers(model: dict):
    """Forget the channel / stride numbers written for the config's own variant (refilled for the swapped one)."""
    neck = model.get('neck')
    if isinstance(neck, dict) and 'in_channels' in neck:
        neck['in_channels'] = None
    for key in ('decode_head', 'auxiliary_head'):
        heads = model.get(key)
        for head in heads if isinstance(heads, list) else [heads]:
            if isinstance(head, dict) and not isinstance(neck, dict) and 'in_channels' in head:
                head['in_channels'] = None


def _flatten(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for item in x:
            yield from _flatten(item)


def _input_size(model_name: str) -> int:
    min_size = timm.get_pretrained_cfg(model_name).to_dict().get('min_input_size') or (3, 0, 0)
    return max(TEST_SIZE, *min_size[1:])


def _run_once(model, size):
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        levels = model.backbone(x)
        feats = model.extract_feat(x)  # backbone + neck
        heads = [getattr(model, n) for n in ('bbox_head', 'rpn_head', 'decode_head') if hasattr(model, n)]
        outs = [head(feats) for head in heads]
    bb = model.backbone
    assert [f.shape[1] for f in levels] == bb.out_channels
    # a map's side is size / stride, rounded down or up depending on the family's convolution padding
    assert all(size // s <= f.shape[-1] <= -(-size // s) for f, s in zip(levels, bb.strides))
    assert len(levels) == len(bb.strides) == len(bb.out_channels)
    if bb.out_norms is not None:
        assert len(bb.out_norms) == len(levels)
    assert outs and all(torch.isfinite(t).all() for t in list(feats) + list(_flatten(outs)))


@pytest.mark.parametrize('config', FAMILY_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_config_builds_and_forwards(config):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, PARAM_SCHEDULERS, init_default_scope

    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    assert backbone.type == 'zoo.Backbone'
    _complete(cfg)  # raises when a written in_channels / stride disagrees with the config's own backbone
    family = _family(backbone.model_name)
    assert os.path.basename(os.path.dirname(config)) == family, f'{config}: a {family} backbone in the wrong folder'

    small = _smallest_variant(backbone.model_name)
    if small != zoo.resolve_model_name(backbone.model_name):
        backbone.model_name = small  # model_kwargs, out_norm, out_indices, drop_path_rate etc. stay
        _clear_backbone_numbers(cfg.model)
        _complete(cfg)
    backbone.pretrained = False  # tests never download
    key = json.dumps(dict(cfg.model.to_dict(), backbone=dict(backbone.to_dict(), drop_path_rate=None)),
                     sort_keys=True, default=repr)
    init_default_scope(cfg.default_scope)
    if key not in _BUILT:
        model = MODELS.build(cfg.model).eval()
        _run_once(model, _input_size(small))
        _BUILT[key] = model
    model = _BUILT[key]

    # the config's optimizer (constructor + paramwise_cfg) and its lr schedule build on this model
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert sum(len(g['params']) for g in optim_wrapper.optimizer.param_groups) == len(
        [p for p in model.parameters() if p.requires_grad])
    for scheduler in cfg.param_scheduler:
        PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optim_wrapper))


# families with no dense-prediction use (image-to-image models), documented in configs/README.md
NOT_DENSE_PREDICTION = {'catanet'}


def _families():
    return sorted({_family(n) for n in zoo.list_models()})


@pytest.mark.parametrize('family', _families())
def test_every_family_ships_configs(family):
    variant = min(n for n in zoo.list_models() if _family(n) == family)
    with torch.device('meta'):
        is_classifier = getattr(timm.create_model(variant), 'is_classifier', True)
    if family in NOT_DENSE_PREDICTION:
        assert not is_classifier, f'{family} is listed as not a dense-prediction backbone but is a classifier'
        return
    for task in ('mmdet', 'mmseg'):
        found = glob.glob(os.path.join(CONFIGS, task, family, '*.py'))
        assert found, f'no configs/{task}/{family}/*.py for the zoo family {family}'
