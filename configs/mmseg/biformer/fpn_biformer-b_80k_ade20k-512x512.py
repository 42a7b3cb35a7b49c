# BiFormer-B Semantic FPN 80k (ADE20K 512x512): the BiFormer-S recipe with drop_path 0.3 (official
# sfpn.biformer_base.py). Official result: 49.9 mIoU. Not reproduced here.
_base_ = './fpn_biformer-s_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.3),
    neck=dict(in_channels=[96, 192, 384, 768]))
