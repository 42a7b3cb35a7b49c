# LITv2-S Mask R-CNN 1x (COCO), the official recipe (ziplab/LITv2 detection/configs/litv2/
# mask_rcnn_litv2_s_fpn_1x_coco.py): HiLo local window 2 in stage 3 (local_ws 0,0,2,1; alpha 0.9), LayerNorm
# (eps 1e-5) per output, drop_path 0.2, AdamW lr 2e-4 / wd 1e-4 without decay on norms (here: on every 1-D
# parameter), fp16 (run with --amp). Official result: 44.9 box / 40.8 mask AP. Not reproduced here.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='litv2_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(local_ws=(0, 0, 2, 1), alpha=0.9)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4), paramwise_cfg=dict(layer_decay_rate=1.0))
