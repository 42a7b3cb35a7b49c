# BiFormer-B RetinaNet 1x (COCO): the BiFormer-S recipe with drop_path 0.3 (official
# retinanet.1x.biformer_base.py). Official result: 47.1 box AP. Not reproduced here.
_base_ = './retinanet_biformer-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.3),
    neck=dict(in_channels=[192, 384, 768]))
