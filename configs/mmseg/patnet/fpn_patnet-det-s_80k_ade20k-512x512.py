# PATNet detection-S Semantic FPN 80k (ADE20K 512x512). No official segmentation recipe or result; the zoo's
# standard Semantic-FPN recipe (the base) with PATNet's dense-prediction backbone settings (BatchNorm per output,
# drop_path 0.15).
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='patnet_det_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        out_norm='BN'),
    neck=dict(in_channels=[128, 256, 512, 1024]))
