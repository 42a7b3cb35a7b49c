# PATNet detection-S RetinaNet 1x (COCO). PATNet released Mask R-CNN only; this is the zoo's standard RetinaNet
# recipe (the base: AdamW 1e-4, wd 0.05) with PATNet's dense-prediction backbone settings (BatchNorm per output,
# drop_path 0.15). No official result.
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='patnet_det_s',
        out_indices=(1, 2, 3),
        drop_path_rate=0.15,
        out_norm='BN'),
    neck=dict(in_channels=[256, 512, 1024]))
