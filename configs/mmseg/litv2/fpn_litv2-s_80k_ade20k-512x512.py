# LITv2-S Semantic FPN 80k (ADE20K 512x512), the official recipe (ziplab/LITv2 segmentation/configs/litv2/
# litv2_s_fpn_r50_512x512_80k_ade20k.py, the PVT recipe): local_ws 0,0,2,1, LayerNorm (eps 1e-5) per output,
# drop_path 0.2, AdamW lr 1e-4 / wd 1e-4, poly (power 0.9, min lr 1e-6) over 80k iterations, batch 2 per GPU.
# Official result: 44.3 mIoU. Not reproduced here.
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='litv2_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(local_ws=(0, 0, 2, 1), alpha=0.9)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))
param_scheduler = [dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=80000, by_epoch=False)]
