# PATNet detection-S UperNet 160k (ADE20K 512x512). PATNet released no segmentation recipe or result; this is the
# zoo's standard UperNet recipe (the base) with PATNet's dense-prediction backbone settings (BatchNorm per output,
# drop_path 0.15).
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='patnet_det_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        out_norm='BN'),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
