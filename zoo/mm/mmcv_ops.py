"""The `mmcv.ops` operators mmdet 3.x / mmseg 1.x configs use, in plain PyTorch and torchvision.

mmcv-lite has no compiled extension (``mmcv._ext``), so its ``mmcv.ops`` cannot be imported and
``mmdet.models`` / ``mmseg.models`` fail on import. This module supplies the handful of operators
the shipped RetinaNet / Mask R-CNN / UperNet / Semantic-FPN configs touch, with mmcv's documented
semantics (same signatures, same return conventions), backed by ``torchvision.ops``:

* ``nms`` / ``batched_nms`` / ``soft_nms`` (hard-NMS only: ``soft_nms`` raises) -- box NMS;
* ``RoIAlign`` / ``roi_align`` -- ``pool_mode='avg'`` (``'max'`` needs full mmcv);
* ``RoIPool`` / ``roi_pool``;
* ``sigmoid_focal_loss`` / ``SigmoidFocalLoss`` (mmdet uses it on CUDA tensors only);
* ``point_sample`` & co. come from mmcv's own pure-PyTorch ``mmcv/ops/point_sample.py``
  (see :mod:`zoo.mm._mmcv_shim`, which decides when and how these stand in for ``mmcv.ops``).

Everything here also works without the shim installed (plain functions on tensors).
"""
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.ops as tvops
from torch import Tensor
from torch.nn.modules.utils import _pair

__all__ = [
    'nms', 'batched_nms', 'soft_nms', 'roi_align', 'RoIAlign', 'roi_pool', 'RoIPool',
    'sigmoid_focal_loss', 'SigmoidFocalLoss',
]

ArrayLike = Union[Tensor, np.ndarray]


def _as_tensor(x: ArrayLike) -> Tuple[Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    if isinstance(x, Tensor):
        return x, False
    raise TypeError(f'expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}')


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float, offset: int = 0,
        score_threshold: float = 0, max_num: int = -1) -> Tuple[ArrayLike, ArrayLike]:
    """Hard NMS with mmcv's semantics.

    Boxes ``(N, 4)`` as x1, y1, x2, y2; a box is suppressed when its IoU with a kept, higher-scoring
    box is greater than ``iou_threshold``. ``offset=1`` is the legacy "+1 pixel" box size
    (width = x2 - x1 + 1). Boxes scoring ``<= score_threshold`` are dropped first (when it is > 0);
    ``max_num > 0`` keeps at most that many. Returns ``(dets (K, 5) = boxes + score, kept indices)``
    sorted by decreasing score, as numpy when the input was numpy.
    """
    boxes_t, is_numpy = _as_tensor(boxes)
    scores_t, _ = _as_tensor(scores)
    if boxes_t.dim() != 2 or boxes_t.size(1) != 4:
        raise ValueError(f'nms: boxes must have shape (N, 4), got {tuple(boxes_t.shape)}')
    if boxes_t.size(0) != scores_t.size(0):
        raise ValueError(f'nms: {boxes_t.size(0)} boxes but {scores_t.size(0)} scores')
    if offset not in (0, 1):
        raise ValueError(f'nms: offset must be 0 or 1, got {offset}')

    candidates = None
    if score_threshold > 0:
        candidates = torch.nonzero(scores_t > score_threshold, as_tuple=False).view(-1)
        boxes_in, scores_in = boxes_t[candidates], scores_t[candidates]
    else:
        boxes_in, scores_in = boxes_t, scores_t
    if offset:
        # enlarging every box's x2, y2 by the offset reproduces mmcv's "(x2 - x1 + offset)" widths,
        # both in the areas and in the intersections
        boxes_in = torch.cat([boxes_in[:, :2], boxes_in[:, 2:] + offset], dim=1)
    keep = tvops.nms(boxes_in.float(), scores_in.float(), float(iou_threshold))
    if max_num > 0:
        keep = keep[:max_num]
    if candidates is not None:
        keep = candidates[keep]
    dets = torch.cat([boxes_t[keep], scores_t[keep].reshape(-1, 1)], dim=1)
    if is_numpy:
        return dets.cpu().numpy(), keep.cpu().numpy()
    return dets, keep


def soft_nms(*args, **kwargs):
    raise NotImplementedError(
        "mmcv.ops.soft_nms is not provided by zoo's mmcv-lite fallback (it is a compiled mmcv op); "
        "use nms_cfg=dict(type='nms', ...) or install full mmcv (see zoo.mm docs).")


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, nms_cfg: Optional[Dict[str, Any]],
                class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """NMS applied independently per ``idxs`` value (class), with mmcv's ``batched_nms`` contract.

    ``nms_cfg=None`` skips NMS and returns all boxes sorted by score. Otherwise ``nms_cfg`` holds
    ``iou_threshold`` and optionally ``type`` ('nms'), ``class_agnostic``, ``split_thr`` (default
    10000: from that many boxes on, classes are processed one by one to bound memory), ``max_num``,
    ``offset``, ``score_threshold``.
    Returns ``(dets (K, 5), keep)`` sorted by decreasing score.
    """
    if nms_cfg is None:
        sorted_scores, order = scores.sort(descending=True)
        return torch.cat([boxes[order], sorted_scores[:, None]], -1), order

    cfg = dict(nms_cfg)
    class_agnostic = cfg.pop('class_agnostic', class_agnostic)
    nms_type = cfg.pop('type', 'nms')
    if nms_type not in ('nms', nms):
        raise NotImplementedError(
            f'batched_nms: nms type {nms_type!r} is not provided by zoo\'s mmcv-lite fallback (only "nms"); '
            'install full mmcv for soft_nms / rotated NMS.')
    if boxes.size(-1) != 4:
        raise NotImplementedError('batched_nms: rotated (N, 5) boxes need full mmcv')
    split_thr = cfg.pop('split_thr', 10000)

    if class_agnostic:
        boxes_for_nms = boxes
    else:
        # shift each class into its own coordinate range so boxes of different classes never overlap
        span = boxes.max() + 1 if boxes.numel() else boxes.new_tensor(1.)
        boxes_for_nms = boxes + (idxs.to(boxes) * span)[:, None]

    if boxes_for_nms.shape[0] < split_thr:
        # max_num / offset / score_threshold, when given, are applied inside nms() on this path, as in mmcv
        dets, keep = nms(boxes_for_nms, scores, **cfg)
        return torch.cat([boxes[keep], dets[:, -1:]], -1), keep

    max_num = cfg.pop('max_num', -1)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for cls in torch.unique(idxs):
        members = torch.nonzero(idxs == cls, as_tuple=False).view(-1)
        _, keep_cls = nms(boxes_for_nms[members], scores[members], **cfg)
        kept[members[keep_cls]] = True
    keep = torch.nonzero(kept, as_tuple=False).view(-1)
    kept_scores, order = scores[keep].sort(descending=True)
    keep = keep[order]
    if max_num > 0:
        keep, kept_scores = keep[:max_num], kept_scores[:max_num]
    return torch.cat([boxes[keep], kept_scores[:, None]], -1), keep


def roi_align(input: Tensor, rois: Tensor, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0,
              pool_mode: str = 'avg', aligned: bool = True) -> Tensor:
    """RoIAlign over ``rois (K, 5)`` = (batch index, x1, y1, x2, y2), mmcv's argument order.

    ``aligned=True`` shifts the box by half a pixel (the pixel-model-correct variant);
    ``sampling_ratio=0`` samples adaptively (ceil(roi_size / output_size) points per bin).
    """
    if pool_mode != 'avg':
        raise NotImplementedError(
            f"roi_align(pool_mode={pool_mode!r}) needs full mmcv; zoo's mmcv-lite fallback supports 'avg' only")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(
            f'roi_align: rois must have shape (K, 5) = (batch_idx, x1, y1, x2, y2), got {tuple(rois.shape)}')
    return tvops.roi_align(input, rois.to(input.dtype), _pair(output_size), float(spatial_scale),
                           int(sampling_ratio), bool(aligned))


class RoIAlign(nn.Module):
    """``mmcv.ops.RoIAlign(output_size, spatial_scale, sampling_ratio, pool_mode, aligned, use_torchvision)``."""

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0, pool_mode: str = 'avg',
                 aligned: bool = True, use_torchvision: bool = False):
        super().__init__()
        if pool_mode != 'avg':
            raise NotImplementedError(
                f"RoIAlign(pool_mode={pool_mode!r}) needs full mmcv; zoo's mmcv-lite fallback supports 'avg' only")
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned
        self.use_torchvision = use_torchvision  # accepted for config compatibility; always torchvision here

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.pool_mode,
                         self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, pool_mode={self.pool_mode}, aligned={self.aligned}')


def roi_pool(input: Tensor, rois: Tensor, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling over ``rois (K, 5)`` = (batch index, x1, y1, x2, y2)."""
    return tvops.roi_pool(input, rois.to(input.dtype), _pair(output_size), float(spatial_scale))


class RoIPool(nn.Module):
    """``mmcv.ops.RoIPool(output_size, spatial_scale)``."""

    def __init__(self, output_size, spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f'output_size={self.output_size}, spatial_scale={self.spatial_scale}'


def sigmoid_focal_loss(input: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25,
                       weight: Optional[Tensor] = None, reduction: str = 'mean') -> Tensor:
    """mmcv's sigmoid focal loss: ``input (N, C)`` logits, ``target (N,)`` class indices (C = background).

    Per element: ``-alpha (1-p)^gamma log p`` for the target class, ``-(1-alpha) p^gamma log(1-p)`` for
    the others. ``weight (C,)`` is a per-class weight picked by each sample's target class (mmcv's
    kernel indexes it by the target; background samples, which mmcv would read out of range, get 1).
    ``'mean'`` divides the sum by N (not N*C), as mmcv does.
    """
    if input.dim() != 2 or target.dim() != 1 or input.size(0) != target.size(0):
        raise ValueError(f'sigmoid_focal_loss: expected input (N, C) and target (N,), got '
                         f'{tuple(input.shape)} and {tuple(target.shape)}')
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f"sigmoid_focal_loss: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    num_classes = input.size(1)
    is_target = F.one_hot(target.clamp(max=num_classes), num_classes + 1)[:, :num_classes].to(input.dtype)
    p = input.sigmoid()
    pos = -alpha * (1 - p).pow(gamma) * F.logsigmoid(input)
    neg = -(1 - alpha) * p.pow(gamma) * F.logsigmoid(-input)
    loss = is_target * pos + (1 - is_target) * neg
    if weight is not None:
        padded = torch.cat([weight.to(input), weight.new_ones(1).to(input)])
        loss = loss * padded[target.clamp(max=num_classes)][:, None]
    if reduction == 'mean':
        return loss.sum() / input.size(0)
    if reduction == 'sum':
        return loss.sum()
    return loss


class SigmoidFocalLoss(nn.Module):
    """``mmcv.ops.SigmoidFocalLoss(gamma, alpha, weight, reduction)``."""

    def __init__(self, gamma: float, alpha: float, weight: Optional[Tensor] = None, reduction: str = 'mean'):
        super().__init__()
        self.gamma, self.alpha, self.reduction = float(gamma), float(alpha), reduction
        self.register_buffer('weight', weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return sigmoid_focal_loss(input, target, self.gamma, self.alpha, self.weight, self.reduction)
