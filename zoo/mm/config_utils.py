"""Fill and check the backbone-dependent numbers of an mmdet / mmseg config from the backbone itself.

A zoo backbone's channels and strides follow from ``model_name`` and ``out_indices`` (its
``feature_info``), so a config may leave them ``None`` and :func:`complete_config` fills them in:
neck / decode-head ``in_channels``, the auxiliary head's ``in_channels`` (its ``in_index`` level),
Semantic-FPN ``feature_strides``, RetinaNet / RPN anchor strides and RoI extractor ``featmap_strides``.
Values already written in the config are checked against the backbone instead, with an error naming
the field, so a config with wrong numbers fails before training starts. ``tools/mm_train.py`` runs it.
"""
from typing import List, Tuple

import timm
import torch

from .backbone import resolve_model_name

__all__ = ['backbone_channels_strides', 'complete_config']

_ZOO_TYPES = ('zoo.Backbone', 'zoo.ZooBackbone', 'ZooBackbone', 'Backbone')


def backbone_channels_strides(backbone_cfg: dict) -> Tuple[List[int], List[int]]:
    """(channels, strides) of the selected levels, from a model built on the meta device (no memory, no init)."""
    name = resolve_model_name(backbone_cfg['model_name'])
    kwargs = dict(backbone_cfg.get('model_kwargs') or {})
    with torch.device('meta'):
        model = timm.create_model(
            name, features_only=True, out_indices=tuple(backbone_cfg.get('out_indices', (0, 1, 2, 3))),
            in_chans=backbone_cfg.get('in_channels', 3), feature_cls=backbone_cfg.get('feature_cls', 'getter'),
            **kwargs)
    return list(model.feature_info.channels()), list(model.feature_info.reduction())


def _fill(cfg: dict, key: str, value, where: str):
    current = cfg.get(key, None)
    if current is None:
        cfg[key] = value
    elif list(current) != list(value) if isinstance(value, list) else current != value:
        raise ValueError(f'{where}.{key} = {current}, but the zoo backbone gives {value}; fix the config or set it '
                         'to None to have it filled in')


def _fpn_out_strides(neck: dict, strides: List[int]) -> List[int]:
    start = neck.get('start_level', 0)
    end = neck.get('end_level', -1)
    used = strides[start:] if end == -1 else strides[start:end + 1]
    out = list(used)
    while len(out) < neck.get('num_outs', len(used)):
        out.append(out[-1] * 2)
    return out


def complete_config(cfg) -> None:
    """Fill ``None`` / check backbone-dependent fields of ``cfg.model`` in place (mmengine Config or dict)."""
    model = cfg['model']
    backbone = model.get('backbone')
    if not backbone or backbone.get('type') not in _ZOO_TYPES:
        return
    channels, strides = backbone_channels_strides(backbone)
    neck = model.get('neck')
    if isinstance(neck, dict) and 'in_channels' in neck:
        _fill(neck, 'in_channels', channels, 'model.neck')
    fpn_strides = _fpn_out_strides(neck, strides) if isinstance(neck, dict) else strides

    for head_key in ('bbox_head', 'rpn_head'):
        head = model.get(head_key)
        if isinstance(head, dict) and isinstance(head.get('anchor_generator'), dict):
            gen = head['anchor_generator']
            if 'strides' in gen:
                n = len(gen['strides'] or fpn_strides)
                _fill(gen, 'strides', fpn_strides[:n], f'model.{head_key}.anchor_generator')
    roi_head = model.get('roi_head')
    if isinstance(roi_head, dict):
        for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
            ext = roi_head.get(key)
            if isinstance(ext, dict) and 'featmap_strides' in ext:
                n = len(ext['featmap_strides'] or fpn_strides[:4])
                _fill(ext, 'featmap_strides', fpn_strides[:n], f'model.roi_head.{key}')

    for head_key in ('decode_head', 'auxiliary_head'):
        head = model.get(head_key)
        heads = head if isinstance(head, list) else [head]
        for h in heads:
            if not isinstance(h, dict) or 'in_channels' not in h:
                continue
            if isinstance(neck, dict):  # e.g. Semantic FPN: the head reads the neck's outputs
                if 'feature_strides' in h:
                    _fill(h, 'feature_strides', fpn_strides[:len(h['feature_strides'] or fpn_strides)],
                          f'model.{head_key}')
                continue
            index = h.get('in_index', -1)
            value = [channels[i] for i in index] if isinstance(index, (list, tuple)) else channels[index]
            _fill(h, 'in_channels', value, f'model.{head_key}')
