# BiFormer-B Mask R-CNN 1x (COCO): the BiFormer-S recipe with drop_path 0.3 (official
# maskrcnn.1x.biformer_base.py). Official result: 48.6 box / 43.7 mask AP. Not reproduced here.
_base_ = './mask-rcnn_biformer-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.3),
    neck=dict(in_channels=[96, 192, 384, 768]))
