# LITv2-B Mask R-CNN 1x (COCO): the LITv2-S recipe with drop_path 0.3 (official mask_rcnn_litv2_b_fpn_1x_coco.py).
# Official result: 47.3 box / 42.6 mask AP. Not reproduced here.
_base_ = './mask-rcnn_litv2-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='litv2_b', drop_path_rate=0.3),
    neck=dict(in_channels=[128, 256, 512, 1024]))
