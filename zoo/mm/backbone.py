"""``ZooBackbone``: any zoo (or timm) model as an mmdet 3.x / mmseg 1.x backbone.

One generic class for every family: it builds the model with ``features_only=True`` through
``timm.create_model`` (so the family's own feature wiring, input padding and pretrained-weight
conversion are used unchanged) and adds what OpenMMLab backbones are expected to have:
``out_indices``, ``frozen_stages`` (applied in ``train()``), ``norm_eval``, ``with_cp``, optional
per-level output norms, and a tuple of NCHW maps from ``forward``.

Config example (scope ``zoo`` after ``custom_imports=dict(imports=['zoo.mm'])``)::

    backbone=dict(type='zoo.Backbone', model_name='efficientvit_m4', out_indices=(0, 1, 2),
                  pretrained='/path/to/efficientvit_m4.pth', drop_path_rate=0.1,
                  model_kwargs=dict(...))

Pretrained weights (``pretrained=``) are loaded into the full classification model *before* it is
wrapped, through timm's loader and the family's ``checkpoint_filter_fn``: official checkpoints and
zoo/timm ones alike. ``pretrained=True`` uses the model's default source (URL / hub),
a path uses that file, an ``http(s)://`` string that URL. For zoo models the checkpoint is compared with
the backbone (classifier aside, ``zoo.models._builder.LoadReport``): ``pretrained_strict=True`` raises on any
missing or unexpected tensor; the default non-strict load (mmengine's convention) logs the fraction of the
parameters it filled and raises when that is below ``pretrained_min_loaded`` (0.5; 0 accepts any partial
load), so a checkpoint of another architecture never leaves the backbone silently random.
A whole-detector checkpoint is instead loaded with mmengine's ``init_cfg=dict(type='Pretrained', ...)``
on the detector.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['ZooBackbone', 'resolve_model_name', 'build_out_norm']

_logger = logging.getLogger(__name__)


def resolve_model_name(model_name: str) -> str:
    """A zoo model (plain or ``zoo_`` name) -> its timm name; otherwise any timm model name as is."""
    import zoo
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f'model_name must be a non-empty string, got {model_name!r}')
    if zoo.models.is_zoo_model(model_name):
        return zoo.resolve_model_name(model_name)
    if timm.is_model(model_name.partition('.')[0]):
        return model_name
    return zoo.resolve_model_name(model_name)  # raises a ValueError naming similar zoo models


def _is_zoo_model(name: str) -> bool:
    from zoo.models import is_zoo_model
    return is_zoo_model(name)


_OUT_NORMS = {
    'LN2d': lambda c, **kw: LayerNorm2d(c, **kw),
    'BN': lambda c, **kw: nn.BatchNorm2d(c, **kw),
    'SyncBN': lambda c, **kw: nn.SyncBatchNorm(c, **kw),
    'GN': lambda c, num_groups=32, **kw: nn.GroupNorm(num_groups, c, **kw),
}


def build_out_norm(norm_cfg: Union[str, dict], num_channels: int) -> nn.Module:
    """``'LN2d'`` / ``dict(type='LN2d', eps=1e-6)``; types: LN2d (channels-first LayerNorm), BN, SyncBN, GN."""
    cfg = dict(type=norm_cfg) if isinstance(norm_cfg, str) else dict(norm_cfg)
    norm_type = cfg.pop('type', None)
    if norm_type not in _OUT_NORMS:
        raise ValueError(f'out_norm type must be one of {sorted(_OUT_NORMS)}, got {norm_type!r}')
    return _OUT_NORMS[norm_type](num_channels, **cfg)


def _pretrained_kwargs(pretrained: Union[bool, str, None], strict: bool, min_loaded: float, zoo_model: bool) -> dict:
    if not pretrained:
        return {}
    kwargs = dict(pretrained=True, pretrained_strict=strict)
    if zoo_model:  # timm's own models take no such argument
        kwargs['pretrained_min_loaded'] = min_loaded
    if pretrained is True:
        return kwargs
    if not isinstance(pretrained, str):
        raise TypeError(f'pretrained must be a bool, a file path or a URL, got {type(pretrained).__name__}')
    if pretrained.startswith(('http://', 'https://')):
        kwargs['pretrained_cfg_overlay'] = dict(url=pretrained, hf_hub_id=None, file=None)
    else:
        path = os.path.expanduser(pretrained)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'pretrained checkpoint not found: {pretrained}')
        kwargs['pretrained_cfg_overlay'] = dict(file=path)
    return kwargs


class ZooBackbone(BaseModule):
    """A ``features_only`` zoo/timm model as an OpenMMLab backbone (see the module docstring).

    Args:
        model_name: zoo model (plain or ``zoo_`` name) or any timm model with ``features_only`` support.
        out_indices: feature levels to return (indices into the model's ``feature_info``).
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and the first k feature levels
            (parameters, and their modules kept in eval mode), as mmdet's ResNet/Swin do.
        norm_eval: keep every BatchNorm in eval mode during training (frozen running statistics).
        with_cp: gradient (activation) checkpointing through the model's ``set_grad_checkpointing``.
        pretrained: False, True (the model's default weights), a local file or a URL.
        pretrained_strict: raise on any missing/unexpected tensor (classifier aside) instead of logging them.
        pretrained_min_loaded: a non-strict load filling less than this fraction of the parameters raises
            (zoo models; 0 accepts any partial load).
        drop_path_rate: stochastic depth rate passed to the model.
        out_norm: optional per-level output norm ('LN2d', 'BN', 'GN', 'SyncBN' or a dict with ``type``).
        in_channels: input channels.
        model_kwargs: extra constructor arguments of the family (e.g. BiFormer ``n_win``).
        feature_cls: timm feature wrapper; 'getter' (``forward_intermediates``) keeps the model's own parameter
            names, which ``frozen_stages`` and the layer-decay constructor rely on.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
            to load a backbone out of a whole-detector checkpoint.
    """

    def __init__(
            self,
            model_name: str,
            out_indices: Sequence[int] = (0, 1, 2, 3),
            frozen_stages: int = -1,
            norm_eval: bool = False,
            with_cp: bool = False,
            pretrained: Union[bool, str] = False,
            pretrained_strict: bool = False,
            pretrained_min_loaded: float = 0.5,
            drop_path_rate: Optional[float] = None,
            out_norm: Optional[Union[str, dict]] = None,
            in_channels: int = 3,
            model_kwargs: Optional[dict] = None,
            feature_cls: str = 'getter',
            init_cfg: Optional[Union[dict, List[dict]]] = None,
    ):
        super().__init__(init_cfg=init_cfg)
        self.model_name = resolve_model_name(model_name)
        self.out_indices = tuple(int(i) for i in (out_indices if isinstance(out_indices, Sequence) else [out_indices]))
        self.frozen_stages = int(frozen_stages)
        self.norm_eval = norm_eval

        kwargs = dict(model_kwargs or {})
        if drop_path_rate is not None:
            kwargs['drop_path_rate'] = drop_path_rate
        kwargs.update(_pretrained_kwargs(pretrained, pretrained_strict, pretrained_min_loaded,
                                         _is_zoo_model(self.model_name)))
        try:
            self.model = timm.create_model(
                self.model_name, features_only=True, out_indices=self.out_indices, in_chans=in_channels,
                feature_cls=feature_cls, **kwargs)
        except AssertionError as e:  # timm asserts on out-of-range feature indices
            raise ValueError(f'{self.model_name}: invalid out_indices {self.out_indices}: {e}') from e
        self.out_channels: List[int] = list(self.model.feature_info.channels())
        self.strides: List[int] = list(self.model.feature_info.reduction())
        if with_cp:
            self._inner_model().set_grad_checkpointing(True)

        self.out_norms = None
        if out_norm is not None:
            self.out_norms = nn.ModuleList([build_out_norm(out_norm, c) for c in self.out_channels])
        self._check_frozen_stages()
        self._freeze_stages()

    # --- structure helpers -------------------------------------------------------------------------
    def _inner_model(self) -> nn.Module:
        """The classification model inside timm's feature wrapper (its own parameter names)."""
        inner = getattr(self.model, 'model', None)
        return inner if isinstance(inner, nn.Module) else self.model

    def _all_feature_info(self) -> List[Dict]:
        info = getattr(self._inner_model(), 'feature_info', None)
        if not isinstance(info, list) or not info:
            raise ValueError(
                f'{self.model_name}: frozen_stages needs the model\'s full feature_info (feature_cls="getter")')
        return info

    def _check_frozen_stages(self):
        if self.frozen_stages < -1:
            raise ValueError(f'frozen_stages must be >= -1, got {self.frozen_stages}')
        if self.frozen_stages > 0 and self.frozen_stages > len(self._all_feature_info()):
            raise ValueError(f'frozen_stages={self.frozen_stages} but {self.model_name} has only '
                             f'{len(self._all_feature_info())} feature levels')

    def _frozen_param_names(self) -> List[str]:
        """Names (in the inner model) of the stem and the first ``frozen_stages`` levels' parameters.

        Parameters are taken in registration order (stem, then stages), up to the first parameter of
        feature level ``frozen_stages`` (or the end of the last frozen level's module).
        """
        if self.frozen_stages < 0:
            return []
        names = [n for n, _ in self._inner_model().named_parameters()]
        info = self._all_feature_info()

        def positions(module_name):
            return [i for i, n in enumerate(names) if n.startswith(module_name + '.')]

        k = self.frozen_stages
        if k < len(info) and positions(info[k]['module']):
            end = positions(info[k]['module'])[0]
        elif k > 0 and positions(info[k - 1]['module']):
            end = positions(info[k - 1]['module'])[-1] + 1
        elif k == 0:
            end = 0
        else:
            raise ValueError(f'{self.model_name}: cannot locate feature level {k - 1} '
                             f'({info[k - 1]["module"]!r}) among the parameters to freeze it')
        return names[:end]

    def _freeze_stages(self):
        frozen = set(self._frozen_param_names())
        if not frozen:
            return
        inner = self._inner_model()
        for name, param in inner.named_parameters():
            if name in frozen:
                param.requires_grad = False
        # modules whose every parameter is frozen run in eval mode (BN statistics, dropout, drop-path)
        for _, module in inner.named_modules():
            params = list(module.parameters())
            if params and all(not p.requires_grad for p in params):
                module.eval()
        if self.out_norms is not None:
            for norm, level in zip(self.out_norms, self.out_indices):
                if level < self.frozen_stages:
                    norm.eval()
                    for p in norm.parameters():
                        p.requires_grad = False

    # --- mmengine hooks ----------------------------------------------------------------------------
    def init_weights(self):
        # The timm model initialised itself (and loaded `pretrained`) at construction; only an explicit
        # init_cfg (e.g. a whole-detector checkpoint) should change the weights now.
        if self.init_cfg:
            super().init_weights()

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(f'{self.model_name}: expected an NCHW batch, got shape {tuple(x.shape)}')
        features = self.model(x)
        if isinstance(features, dict):
            features = list(features.values())
        if self.out_norms is not None:
            features = [norm(f) for norm, f in zip(self.out_norms, features)]
        return tuple(features)

    # for the layer-decay optimizer constructor
    def param_layer_ids(self) -> Tuple[Dict[str, int], int]:
        """(parameter name in this module -> layer id, number of layers) from the model's ``group_matcher``.

        Layer 0 is the stem; higher ids are deeper; output norms get the last layer id. Parameters
        the matcher does not assign also get the last id (timm's rule).
        """
        from timm.models import group_parameters
        inner = self._inner_model()
        if not hasattr(inner, 'group_matcher'):
            raise ValueError(f'{self.model_name} has no group_matcher(); layer-wise lr decay needs one')
        layer_map = group_parameters(inner, inner.group_matcher(coarse=False), reverse=True)
        num_layers = max(layer_map.values()) + 2 if layer_map else 1
        prefix = '' if inner is self.model else 'model.'
        ids = {}
        for name, _ in self.named_parameters():
            inner_name = name[len('model.' + prefix):] if name.startswith('model.' + prefix) else None
            ids[name] = layer_map.get(inner_name, num_layers - 1) if inner_name is not None else num_layers - 1
        return ids, num_layers
