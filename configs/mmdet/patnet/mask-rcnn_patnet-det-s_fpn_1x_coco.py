# PATNet (PartialNet) detection-S Mask R-CNN 1x (COCO), the official recipe (haiduo/PartialNet detection/configs/
# partialnet/mask_rcnn_partialnet_s_fpn_1x_coco.py + detection/backbones/partialnet.py): the FasterNet-S-shaped
# backbone with PAT_sp (`patnet_det_s`), a BatchNorm on every output (`fork_feat` norm0/2/4/6), BatchNorm
# statistics trained (the official config's ResNet `norm_eval` is swallowed by the backbone's **kwargs),
# drop_path 0.15, AdamW lr 2e-4 / wd 1e-4 on every parameter. Official result: not published (README: weights and
# numbers "coming soon"); nothing reproduced here.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='patnet_det_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        out_norm='BN'),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(
    optimizer=dict(lr=2e-4, weight_decay=1e-4),
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))
