# LITv2-B RetinaNet 1x (COCO): the LITv2-S recipe with drop_path 0.3 (official retinanet_litv2_b_fpn_1x_coco.py).
# Official result: 46.7 box AP. Not reproduced here.
_base_ = './retinanet_litv2-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='litv2_b', drop_path_rate=0.3),
    neck=dict(in_channels=[256, 512, 1024]))
