# LITv2-B Semantic FPN 80k (ADE20K 512x512): the LITv2-S recipe with drop_path 0.3 (official
# litv2_b_fpn_r50_512x512_80k_ade20k.py). Official result: 47.2 mIoU. Not reproduced here.
_base_ = './fpn_litv2-s_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(model_name='litv2_b', drop_path_rate=0.3),
    neck=dict(in_channels=[128, 256, 512, 1024]))
