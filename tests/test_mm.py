"""zoo.mm: the OpenMMLab integration, trained for real on tiny generated data.

* the mmcv-lite fallback ops against mmcv's documented semantics on hand-made cases;
* ZooBackbone options (out_indices, frozen_stages in train(), norm_eval, with_cp, out norms, pretrained file);
* the layer-decay optimizer constructor;
* real mmengine Runner train + val (+ resume / test from the saved checkpoint under safe loading) for
  RetinaNet, Mask R-CNN and UperNet with a small backbone on a few synthetic images;
* (every config in configs/ builds and runs one forward: tests/test_mm_configs.py).
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

import zoo.mm  # noqa: E402  (installs the mmcv-lite fallback before mmdet.models / mmseg.models load)
from zoo.mm import ZooBackbone  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs')
# the smallest dense-prediction backbone: zoo's EfficientViT-M0 once registered, timm's until then
TEST_BACKBONE = os.environ.get('ZOO_MM_TEST_BACKBONE', 'efficientvit_m0')
NEEDS_FALLBACK = pytest.mark.skipif(zoo.mm.MMCV_OPS_MODE != 'fallback', reason='full mmcv installed')


# ------------------------------------------------------------------------------------------------
# mmcv.ops fallback
# ------------------------------------------------------------------------------------------------
def _iou(a, b):
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_nms_definition():
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9], [21, 21, 30, 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.3])
    # greedy by score: 3 (0.95) kept; 0 IoU(3)=0.9 > .5 dropped; 1 IoU(3)=.. < .5? check by hand below
    expected, remaining = [], list(scores.argsort(descending=True).tolist())
    while remaining:
        i = remaining.pop(0)
        expected.append(i)
        remaining = [j for j in remaining if _iou(boxes[i].tolist(), boxes[j].tolist()) <= 0.5]
    dets, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == expected
    assert torch.equal(dets[:, :4], boxes[keep]) and torch.equal(dets[:, 4], scores[keep])
    # numpy in -> numpy out; max_num; score_threshold drops low boxes before NMS and indexes the input
    dets_np, keep_np = nms(boxes.numpy(), scores.numpy(), 0.5, max_num=1)
    assert isinstance(keep_np, np.ndarray) and keep_np.tolist() == expected[:1]
    _, keep_thr = nms(boxes, scores, 0.5, score_threshold=0.75)
    assert keep_thr.tolist() == [i for i in expected if scores[i] > 0.75]


def test_nms_offset_one_uses_plus_one_widths():
    from mmcv.ops import nms
    # with offset=1 the boxes are 2x2 pixels and overlap by 1x2: IoU = 2 / 6 = 0.333; with offset=0: 0 / 2 = 0
    boxes = torch.tensor([[0, 0, 1, 1], [1, 0, 2, 1.]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.3, offset=0)[1].tolist() == [0, 1]
    assert nms(boxes, scores, 0.3, offset=1)[1].tolist() == [0]
    assert nms(boxes, scores, 0.34, offset=1)[1].tolist() == [0, 1]


def test_batched_nms_per_class_and_split():
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    idxs = torch.tensor([0, 0, 1, 1])
    dets, keep = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5))
    assert keep.tolist() == [0, 2, 3]  # box 1 suppressed by 0 (same class); box 2 survives (other class)
    assert torch.equal(dets[:, 4], scores[keep])
    _, keep_agn = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5), class_agnostic=True)
    assert keep_agn.tolist() == [0, 3]
    # the per-class (split) path gives the same answer, and honours max_num
    _, keep_split = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5, split_thr=2))
    assert keep_split.tolist() == [0, 2, 3]
    _, keep_max = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5, split_thr=2, max_num=2))
    assert keep_max.tolist() == [0, 2]
    # nms_cfg=None: no suppression, sorted by score
    dets_all, order = batched_nms(boxes, scores.flip(0), idxs, None)
    assert order.tolist() == [3, 2, 1, 0] and dets_all.shape == (4, 5)


def test_roi_align_definition():
    from mmcv.ops import RoIAlign, roi_align
    # a linear ramp: bilinear sampling is exact, so each output bin is the ramp at the bin centre
    h, w = 8, 10
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(2, 3, h, w).contiguous()
    rois = torch.tensor([[1, 2., 1., 6., 5.]])  # batch 1, x1=2, x2=6
    out = RoIAlign((2, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)(ramp, rois)
    # aligned=True: pixel i sits at coordinate i + 0.5, so the sampled x = box x - 0.5; bin centres 2.5, 3.5, 4.5, 5.5
    expected = torch.tensor([2.0, 3.0, 4.0, 5.0]).view(1, 1, 1, 4).expand(1, 3, 2, 4)
    torch.testing.assert_close(out, expected)
    # spatial_scale maps image coordinates onto the feature map
    out_half = roi_align(ramp, torch.tensor([[0, 4., 2., 12., 10.]]), (2, 4), 0.5, 2, 'avg', True)
    torch.testing.assert_close(out_half, expected)
    with pytest.raises(NotImplementedError, match='full mmcv'):
        RoIAlign(7, pool_mode='max')


def test_roi_pool_and_focal_loss_definitions():
    from mmcv.ops import RoIPool, sigmoid_focal_loss
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    out = RoIPool((1, 1), 1.0)(x, torch.tensor([[0, 0., 0., 1., 1.]]))
    assert out.item() == 5.0  # max over the top-left 2x2 block (0, 1, 4, 5)

    logits = torch.tensor([[0.3, -1.2, 2.0], [-0.5, 0.1, 0.7]], requires_grad=True)
    target = torch.tensor([2, 3])  # sample 1 is background (label == num_classes)
    gamma, alpha = 2.0, 0.25
    p = logits.sigmoid()
    onehot = torch.tensor([[0, 0, 1], [0, 0, 0.]])
    by_hand = -(onehot * alpha * (1 - p) ** gamma * p.log() + (1 - onehot) * (1 - alpha) * p ** gamma * (1 - p).log())
    torch.testing.assert_close(sigmoid_focal_loss(logits, target, gamma, alpha, None, 'none'), by_hand)
    loss = sigmoid_focal_loss(logits, target, gamma, alpha, None, 'mean')
    torch.testing.assert_close(loss, by_hand.sum() / 2)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@NEEDS_FALLBACK
def test_unsupplied_ops_import_but_fail_clearly():
    import mmcv.ops
    from mmcv.ops import DeformConv2d, ModulatedDeformConv2d  # importable: mmdet imports them at module level

    from zoo.mm._mmcv_shim import MmcvOpUnavailable
    with pytest.raises(MmcvOpUnavailable, match=r'mmcv\.ops\.deform_conv\.DeformConv2d needs mmcv.s compiled ops'):
        DeformConv2d(4, 4, 3)
    assert not isinstance(torch.nn.Conv2d(1, 1, 1), (DeformConv2d, ModulatedDeformConv2d))
    from mmengine.registry import MODELS
    with pytest.raises(MmcvOpUnavailable, match='install full mmcv'):
        MODELS.build(dict(type='DCNv2', in_channels=4, out_channels=4, kernel_size=3))
    # mmcv's own pure-PyTorch ops are the real ones
    assert mmcv.ops.point_sample.__module__ == 'mmcv.ops.point_sample'
    assert mmcv.ops.nms.__module__ == 'zoo.mm.mmcv_ops'


def test_fallback_is_not_installed_over_full_mmcv(monkeypatch):
    from zoo.mm import _mmcv_shim
    monkeypatch.setitem(_mmcv_shim._state, 'mode', None)
    monkeypatch.setattr(_mmcv_shim, '_full_mmcv_installed', lambda: True)
    before = list(__import__('sys').meta_path)
    assert _mmcv_shim.install() == 'full-mmcv'
    assert __import__('sys').meta_path == before


# ------------------------------------------------------------------------------------------------
# the backbone and the optimizer constructor
# ------------------------------------------------------------------------------------------------
def test_backbone_options():
    bb = ZooBackbone(TEST_BACKBONE, out_indices=(1, 2), frozen_stages=1, norm_eval=True, out_norm='LN2d')
    bb.train()
    feats = bb(torch.randn(2, 3, 128, 128))
    assert len(feats) == 2
    assert [f.shape[1] for f in feats] == bb.out_channels
    assert [128 // f.shape[-1] for f in feats] == bb.strides
    inner = bb._inner_model()
    info = inner.feature_info
    frozen = {n for n, p in inner.named_parameters() if not p.requires_grad}
    assert frozen and all(not n.startswith(info[1]['module'] + '.') for n in frozen)
    assert all(n in frozen for n, _ in inner.named_parameters() if n.startswith(info[0]['module'] + '.'))
    # frozen modules and every BatchNorm stay in eval mode through train()
    bns = [m for m in bb.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert bb.out_norms[0].training and all(p.requires_grad for p in bb.out_norms[0].parameters())  # level 1: free
    feats[-1].float().mean().backward()
    assert all(p.grad is None for n, p in inner.named_parameters() if n in frozen)
    with pytest.raises(ValueError, match='frozen_stages'):
        ZooBackbone(TEST_BACKBONE, out_indices=(0, 1, 2), frozen_stages=99)
    with pytest.raises(ValueError, match='out_indices'):
        ZooBackbone(TEST_BACKBONE, out_indices=(0, 1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match='unknown zoo model'):
        ZooBackbone('no_such_model_xyz')


def test_backbone_with_cp_matches_and_pretrained_file(tmp_path):
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(0)
    name = zoo.mm.resolve_model_name(TEST_BACKBONE)
    reference = timm.create_model(name).eval()
    path = str(tmp_path / 'weights.safetensors')
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    bb = ZooBackbone(TEST_BACKBONE, out_indices=(0, 1, 2), pretrained=path, pretrained_strict=True).eval()
    for name_, value in bb._inner_model().state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name_])
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, indices=(0, 1, 2), intermediates_only=True)
        got = bb(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    bb_cp = ZooBackbone(TEST_BACKBONE, out_indices=(0, 1, 2), pretrained=path, with_cp=True).train()
    bb.train()
    torch.testing.assert_close(bb_cp(x)[-1], bb(x)[-1])
    with pytest.raises(FileNotFoundError):
        ZooBackbone(TEST_BACKBONE, pretrained=str(tmp_path / 'missing.pth'))


def test_backbone_pretrained_of_another_architecture_is_an_error(tmp_path):
    """strict is strict; the default non-strict load refuses a checkpoint that fills almost nothing."""
    import timm
    from safetensors.torch import save_file

    from zoo.errors import UserError
    other = timm.create_model('zoo_patnet_t0')
    path = str(tmp_path / 'other.safetensors')
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, path)
    with pytest.raises(UserError, match='does not fit'):
        ZooBackbone('efficientvit_m0', out_indices=(0, 1, 2), pretrained=path, pretrained_strict=True)
    with pytest.raises(UserError, match=r'fills only 0\.0%'):
        ZooBackbone('efficientvit_m0', out_indices=(0, 1, 2), pretrained=path)
    ZooBackbone('efficientvit_m0', out_indices=(0, 1, 2), pretrained=path, pretrained_min_loaded=0)


def test_layer_decay_groups():
    from zoo.mm import layer_decay_param_groups

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ZooBackbone(TEST_BACKBONE, out_indices=(0, 1, 2))
            self.neck = torch.nn.Conv2d(8, 8, 1)

    det = Detector()
    groups = layer_decay_param_groups(det, base_lr=1.0, base_wd=0.05, layer_decay_rate=0.5)
    ids, num_layers = det.backbone.param_layer_ids()
    by_param = {id(p): g for g in groups for p in g['params']}
    model_no_wd = {'backbone.' + n for n in zoo.mm.layer_decay._no_weight_decay_names(det.backbone)}
    for name, p in det.named_parameters():
        g = by_param[id(p)]
        if name.startswith('backbone.'):
            assert g['lr'] == pytest.approx(0.5 ** (num_layers - 1 - ids[name[len('backbone.'):]]))
        else:
            assert g['lr'] == 1.0
        assert g['weight_decay'] == (0.0 if p.ndim <= 1 or name in model_no_wd else 0.05)
    lrs = [by_param[id(p)]['lr'] for n, p in det.backbone.named_parameters()]
    assert lrs[0] < lrs[-1] and num_layers > 2
    assert sum(len(g['params']) for g in groups) == len(list(det.parameters()))


# ------------------------------------------------------------------------------------------------
# tiny generated datasets
# ------------------------------------------------------------------------------------------------
def _draw_shapes(rng, size, n):
    """An image with n filled rectangles (class 0) or ellipses (class 1); returns image, boxes, labels, masks."""
    h, w = size
    img = (rng.random((h, w, 3)) * 40).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    boxes, labels, masks = [], [], []
    for _ in range(n):
        bw, bh = rng.integers(w // 4, w // 2), rng.integers(h // 4, h // 2)
        x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        label = int(rng.integers(0, 2))
        if label == 0:
            mask = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        else:
            cx, cy = x0 + bw / 2, y0 + bh / 2
            mask = ((xx + 0.5 - cx) / (bw / 2)) ** 2 + ((yy + 0.5 - cy) / (bh / 2)) ** 2 <= 1
        img[mask] = (200, 60, 60) if label == 0 else (60, 60, 200)
        boxes.append([float(x0), float(y0), float(bw), float(bh)])
        labels.append(label)
        masks.append(mask)
    return img, boxes, labels, masks


def _polygon(mask):
    """The mask's outline as one COCO polygon (its convex hull is enough for these convex shapes)."""
    import cv2
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


@pytest.fixture(scope='module')
def coco_tiny(tmp_path_factory):
    import cv2
    root = tmp_path_factory.mktemp('coco_tiny')
    os.makedirs(root / 'images')
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(4):
        img, boxes, labels, masks = _draw_shapes(rng, (128, 128), 2)
        cv2.imwrite(str(root / 'images' / f'{i}.png'), img[..., ::-1])
        images.append(dict(id=i, file_name=f'{i}.png', height=128, width=128))
        for box, label, mask in zip(boxes, labels, masks):
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=label + 1, bbox=box, area=float(mask.sum()),
                             iscrowd=0, segmentation=_polygon(mask)))
    categories = [dict(id=1, name='rectangle'), dict(id=2, name='ellipse')]
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=categories), f)
    return str(root)


@pytest.fixture(scope='module')
def seg_tiny(tmp_path_factory):
    import cv2
    root = tmp_path_factory.mktemp('seg_tiny')
    for sub in ('img', 'ann'):
        os.makedirs(root / sub)
    rng = np.random.default_rng(1)
    for i in range(4):
        img, _, labels, masks = _draw_shapes(rng, (128, 128), 2)
        seg = np.zeros((128, 128), np.uint8)  # 0 = background, 1 = rectangle, 2 = ellipse
        for label, mask in zip(labels, masks):
            seg[mask] = label + 1
        cv2.imwrite(str(root / 'img' / f'{i}.png'), img[..., ::-1])
        cv2.imwrite(str(root / 'ann' / f'{i}.png'), seg)
    return str(root)


# ------------------------------------------------------------------------------------------------
# real Runner training
# ------------------------------------------------------------------------------------------------
def _backbone_cfg(out_indices):
    return dict(model_name=TEST_BACKBONE, out_indices=out_indices, pretrained=False, drop_path_rate=None)


def _det_cfg(base, data_root, work_dir, iters, with_mask):
    from mmengine.config import Config

    from zoo.mm.config_utils import complete_config
    cfg = Config.fromfile(os.path.join(CONFIGS, 'mmdet', '_base_', base))
    cfg.model.backbone.update(_backbone_cfg((0, 1, 2)))
    cfg.model.neck.in_channels = None
    cfg.model.data_preprocessor.pad_size_divisor = 64  # the backbone's coarsest stride
    if with_mask:  # FPN levels at strides 16..128: the anchors and RoI extractors follow from the backbone
        cfg.model.neck.num_outs = 4
        cfg.model.rpn_head.anchor_generator.strides = None
        cfg.model.roi_head.bbox_roi_extractor.featmap_strides = None
        cfg.model.roi_head.mask_roi_extractor.featmap_strides = None
        cfg.model.roi_head.bbox_head.num_classes = 2
        cfg.model.roi_head.mask_head.num_classes = 2
        cfg.model.test_cfg.rcnn.score_thr = 0.0  # an undertrained model still yields detections to evaluate
    else:
        cfg.model.bbox_head.anchor_generator.strides = None
        cfg.model.bbox_head.num_classes = 2
        cfg.model.test_cfg.score_thr = 0.0
    complete_config(cfg)

    metainfo = dict(classes=('rectangle', 'ellipse'))
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask)]
    train_pipeline = load + [dict(type='Resize', scale=(128, 128), keep_ratio=True), dict(type='PackDetInputs')]
    test_pipeline = load + [dict(type='Resize', scale=(128, 128), keep_ratio=True), dict(
        type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    dataset = dict(type='CocoDataset', data_root=data_root, ann_file='ann.json', data_prefix=dict(img='images/'),
                   metainfo=metainfo, filter_cfg=dict(filter_empty_gt=False), backend_args=None)
    cfg.train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                sampler=dict(type='InfiniteSampler', shuffle=False),
                                dataset=dict(dataset, pipeline=train_pipeline))
    cfg.val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, drop_last=False,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              dataset=dict(dataset, pipeline=test_pipeline, test_mode=True))
    cfg.test_dataloader = cfg.val_dataloader
    metric = ['bbox', 'segm'] if with_mask else ['bbox']
    cfg.val_evaluator = dict(type='CocoMetric', ann_file=os.path.join(data_root, 'ann.json'), metric=metric,
                             backend_args=None)
    cfg.test_evaluator = cfg.val_evaluator
    return _short_schedule(cfg, work_dir, iters, lr=2e-4)


def _short_schedule(cfg, work_dir, iters, lr):
    cfg.work_dir = work_dir
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.val_cfg = dict(type='ValLoop')
    cfg.test_cfg = dict(type='TestLoop')
    cfg.param_scheduler = []
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.optim_wrapper.paramwise_cfg = dict(layer_decay_rate=0.9)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.default_hooks.pop('visualization', None)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)
    cfg.pop('load_from', None)
    cfg.resume = False
    return cfg


def _seg_cfg(data_root, work_dir, iters):
    from mmengine.config import Config

    from zoo.mm.config_utils import complete_config
    cfg = Config.fromfile(os.path.join(CONFIGS, 'mmseg', '_base_', 'zoo_upernet_160k_ade20k-512x512.py'))
    cfg.model.backbone.update(_backbone_cfg((0, 1, 2)))
    cfg.crop_size = (128, 128)
    cfg.model.data_preprocessor.size = (128, 128)
    cfg.model.decode_head.update(in_index=[0, 1, 2], in_channels=None, channels=32, num_classes=3)
    cfg.model.auxiliary_head.update(in_index=1, in_channels=None, channels=16, num_classes=3)
    complete_config(cfg)
    metainfo = dict(classes=('background', 'rectangle', 'ellipse'), palette=[[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    dataset = dict(type='BaseSegDataset', data_root=data_root, data_prefix=dict(img_path='img', seg_map_path='ann'),
                   img_suffix='.png', seg_map_suffix='.png', metainfo=metainfo, reduce_zero_label=False)
    cfg.train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                sampler=dict(type='InfiniteSampler', shuffle=False),
                                dataset=dict(dataset, pipeline=load + [dict(type='PackSegInputs')]))
    cfg.val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              dataset=dict(dataset, pipeline=load + [dict(type='PackSegInputs')]))
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]  # mmseg's inference_model
    cfg.val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
    cfg.test_evaluator = cfg.val_evaluator
    return _short_schedule(cfg, work_dir, iters, lr=1e-3)


def _train(cfg):
    """(runner after training and validation, its checkpoint)."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpts = glob.glob(os.path.join(cfg.work_dir, 'iter_*.pth'))
    return runner, ckpts[0] if ckpts else None


def _check_training(runner, ckpt, metric_keys):
    losses = runner.message_hub.get_scalar('train/loss').data[0].tolist()
    assert len(losses) == runner.cfg.train_cfg['max_iters'] and all(np.isfinite(losses))
    half = len(losses) // 2
    assert np.mean(losses[half:]) < np.mean(losses[:half]), f'loss did not fall: {losses}'
    metrics = {k: v for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}
    for key in metric_keys:
        assert f'val/{key}' in metrics, f'{key} missing from {sorted(metrics)}'
        assert np.isfinite(metrics[f'val/{key}'].current())
    assert ckpt is not None and os.path.isfile(ckpt)


def _train_and_check(cfg, metric_keys):
    runner, ckpt = _train(cfg)
    _check_training(runner, ckpt, metric_keys)
    return runner, ckpt


@pytest.fixture(scope='module')
def retinanet_run(coco_tiny, tmp_path_factory):
    """A RetinaNet trained for 6 iterations on coco_tiny: (runner, checkpoint)."""
    cfg = _det_cfg('zoo_retinanet_1x_coco.py', coco_tiny, str(tmp_path_factory.mktemp('retina')), iters=6,
                   with_mask=False)
    return _train(cfg)


@pytest.fixture(scope='module')
def upernet_run(seg_tiny, tmp_path_factory):
    """An UperNet trained for 6 iterations on seg_tiny: (runner, checkpoint)."""
    cfg = _seg_cfg(seg_tiny, str(tmp_path_factory.mktemp('upernet')), iters=6)
    return _train(cfg)


def test_runner_retinanet_train_val_and_resume(retinanet_run):
    runner, ckpt = retinanet_run
    _check_training(runner, ckpt, ['coco/bbox_mAP'])
    cfg = runner.cfg
    # resume and test go through mmengine's own torch.load under weights_only=True (safe loading stays on)
    from mmengine.runner import Runner
    resumed = cfg.copy()
    resumed.train_cfg = dict(type='IterBasedTrainLoop', max_iters=7, val_interval=100)
    resumed.resume, resumed.load_from = True, ckpt
    runner2 = Runner.from_cfg(resumed)
    runner2.train()
    assert runner2.iter == 7
    tester = cfg.copy()
    tester.load_from = ckpt
    metrics = Runner.from_cfg(tester).test()
    assert 'coco/bbox_mAP' in metrics


@pytest.mark.slow
def test_runner_mask_rcnn_train_val(coco_tiny, tmp_path):
    cfg = _det_cfg('zoo_mask-rcnn_1x_coco.py', coco_tiny, str(tmp_path / 'mrcnn'), iters=4, with_mask=True)
    _train_and_check(cfg, ['coco/bbox_mAP', 'coco/segm_mAP'])


def test_runner_upernet_train_val(upernet_run):
    _check_training(*upernet_run, ['mIoU'])



# ------------------------------------------------------------------------------------------------
# zoo mm-demo on the trained runs
# ------------------------------------------------------------------------------------------------
def _demo_inputs(folder, seed):
    """One square and one non-square generated picture, and a file that is no image."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    sizes = {'square.png': (128, 128), 'wide.png': (96, 160)}
    for name, size in sizes.items():
        cv2.imwrite(str(folder / name), _draw_shapes(rng, size, 2)[0][..., ::-1])
    (folder / 'broken.png').write_bytes(b'not a png')
    return sizes


@pytest.mark.parametrize('run', ['retinanet_run', 'upernet_run'])
def test_mm_demo_draws_the_prediction(run, request, tmp_path, capsys):
    from PIL import Image

    from zoo import mm_demo
    runner, ckpt = request.getfixturevalue(run)
    config = str(tmp_path / 'config.py')
    runner.cfg.dump(config)
    sizes = _demo_inputs(tmp_path / 'in', seed=7)
    out = tmp_path / 'out'
    assert mm_demo.main([config, ckpt, str(tmp_path / 'in'), '--out-dir', str(out), '--score-thr', '0']) == 0
    printed = capsys.readouterr()
    assert 'broken.png' in printed.err  # reported and skipped
    assert sorted(os.listdir(out)) == sorted(sizes)
    for name, (h, w) in sizes.items():
        with Image.open(out / name) as drawn, Image.open(tmp_path / 'in' / name) as original:
            assert drawn.size == (w, h) and drawn.mode == 'RGB'
            # the prediction is drawn over the picture: boxes (score threshold 0) or the blended class map
            changed = np.abs(np.asarray(drawn, np.int16) - np.asarray(original.convert('RGB'), np.int16)).max(-1) > 0
            assert 0.005 < changed.mean(), f'{name}: nothing drawn'
    assert ('detections >= 0.0' if run == 'retinanet_run' else 'pixels: ') in printed.out
    assert mm_demo.main([config, ckpt, str(tmp_path / 'in'), '--out-dir', str(out), '--strict']) == 2


def test_mm_demo_refuses_a_checkpoint_of_another_model(retinanet_run, upernet_run, tmp_path):
    from zoo import mm_demo
    (det_runner, det_ckpt), (_, seg_ckpt) = retinanet_run, upernet_run
    config = str(tmp_path / 'retina.py')
    det_runner.cfg.dump(config)
    with pytest.raises(ValueError, match=r'does not match .*Missing key.*neck.*Unexpected key.*decode_head'):
        mm_demo.build_model(config, seg_ckpt, 'cpu')
    with pytest.raises(ValueError, match=r'does not match .*size mismatch for bbox_head.retina_cls.weight'):
        mm_demo.build_model(config, det_ckpt, 'cpu', ['model.bbox_head.num_classes=3'])
