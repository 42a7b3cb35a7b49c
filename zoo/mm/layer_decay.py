"""Layer-wise learning-rate decay for zoo backbones inside mmengine (mmdet / mmseg) models.

The dense-prediction recipes of most modern backbones fine-tune with AdamW and layer-wise lr decay
(BEiT style: parameters ``d`` layers below the top get ``lr * decay_rate ** d``). The layer of each
backbone parameter comes from the model's own ``group_matcher(coarse=False)`` -- the same grouping
timm's ``param_groups_layer_decay`` uses -- so every family works without extra code::

    optim_wrapper = dict(
        type='OptimWrapper',
        constructor='zoo.LayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.9))

``paramwise_cfg`` keys: ``layer_decay_rate`` (required, in (0, 1]); ``no_decay_1d`` (default True:
biases, norm weights and the model's ``no_weight_decay()`` names get weight decay 0);
``backbone_lr_mult`` (default 1.0, multiplies every backbone group). Neck and head parameters sit
on the top layer (scale 1). Every :class:`~zoo.mm.backbone.ZooBackbone` in the model is handled.
"""
from typing import Dict, List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from .backbone import ZooBackbone

__all__ = ['ZooLayerDecayOptimizerConstructor', 'layer_decay_param_groups']


def _no_weight_decay_names(backbone: ZooBackbone) -> set:
    inner = backbone._inner_model()
    names = set()
    if hasattr(inner, 'no_weight_decay'):
        names = set(inner.no_weight_decay())
    prefix = 'model.' if inner is backbone.model else 'model.model.'
    return {prefix + n for n in names}


def layer_decay_param_groups(model: nn.Module, base_lr: float, base_wd: float, layer_decay_rate: float,
                             no_decay_1d: bool = True, backbone_lr_mult: float = 1.0) -> List[Dict]:
    """Parameter groups (``params``, ``lr``, ``weight_decay``, ``layer_id``) for ``model``."""
    if not 0 < layer_decay_rate <= 1:
        raise ValueError(f'layer_decay_rate must be in (0, 1], got {layer_decay_rate}')
    backbones = {prefix: m for prefix, m in model.named_modules() if isinstance(m, ZooBackbone)}
    if not backbones:
        raise ValueError('ZooLayerDecayOptimizerConstructor: the model contains no zoo.mm ZooBackbone')

    # parameter name in `model` -> (layer id, number of layers, no-wd names of its backbone)
    assigned = {}
    for prefix, backbone in backbones.items():
        ids, num_layers = backbone.param_layer_ids()
        no_wd = _no_weight_decay_names(backbone)
        for name, layer_id in ids.items():
            assigned[f'{prefix}.{name}' if prefix else name] = (layer_id, num_layers, name in no_wd)

    groups: Dict[tuple, Dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id, num_layers, model_no_wd = assigned.get(name, (None, None, False))
        if layer_id is None:  # neck / head: the top layer
            scale, group_layer = 1.0, 'top'
        else:
            scale, group_layer = backbone_lr_mult * layer_decay_rate ** (num_layers - 1 - layer_id), layer_id
        no_decay = model_no_wd or (no_decay_1d and (param.ndim <= 1 or name.endswith('.bias')))
        key = (group_layer, no_decay, scale)
        if key not in groups:
            groups[key] = dict(params=[], lr=base_lr * scale, weight_decay=0.0 if no_decay else base_wd,
                               layer_id=group_layer, param_names=[])
        groups[key]['params'].append(param)
        groups[key]['param_names'].append(name)
    return list(groups.values())


class ZooLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """mmengine optimizer-wrapper constructor applying :func:`layer_decay_param_groups`."""

    def add_params(self, params: List[Dict], module: nn.Module, **kwargs) -> None:
        cfg = dict(self.paramwise_cfg)
        if 'layer_decay_rate' not in cfg:
            raise ValueError("ZooLayerDecayOptimizerConstructor needs paramwise_cfg=dict(layer_decay_rate=...)")
        unknown = set(cfg) - {'layer_decay_rate', 'no_decay_1d', 'backbone_lr_mult'}
        if unknown:
            raise ValueError(f'ZooLayerDecayOptimizerConstructor: unsupported paramwise_cfg keys {sorted(unknown)}')
        if self.base_lr is None:
            raise ValueError('ZooLayerDecayOptimizerConstructor needs optimizer lr')
        groups = layer_decay_param_groups(
            module, self.base_lr, self.base_wd or 0.0, float(cfg['layer_decay_rate']),
            no_decay_1d=cfg.get('no_decay_1d', True), backbone_lr_mult=float(cfg.get('backbone_lr_mult', 1.0)))
        for group in groups:
            names = group.pop('param_names')
            print_log(f'layer {group["layer_id"]}: lr={group["lr"]:.3g} wd={group["weight_decay"]} '
                      f'({len(names)} params, e.g. {names[0]})', logger='current', level=10)  # DEBUG
            params.append(group)
