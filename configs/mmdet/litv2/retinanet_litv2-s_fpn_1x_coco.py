# LITv2-S RetinaNet 1x (COCO), the official recipe (ziplab/LITv2 detection/configs/litv2/
# retinanet_litv2_s_fpn_1x_coco.py): HiLo local window 2 in stage 3 (local_ws 0,0,2,1; alpha 0.9), a LayerNorm
# (eps 1e-5) on every output (`norm{i}`), drop_path 0.2, AdamW lr 1e-4 / wd 1e-4 (the official paramwise_cfg
# lacks `custom_keys`, so every parameter is decayed), fp16 (run with --amp). The official FPN reads all four
# levels with start_level=1; reading levels 1-3 is the same network without the unused stride-4 output.
# Official result: 44.0 box AP. Not reproduced here.
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='litv2_s',
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(local_ws=(0, 0, 2, 1), alpha=0.9)),
    neck=dict(in_channels=[192, 384, 768]))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))
