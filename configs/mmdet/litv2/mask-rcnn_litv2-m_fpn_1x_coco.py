# LITv2-M Mask R-CNN 1x (COCO): the LITv2-S recipe (official mask_rcnn_litv2_m_fpn_1x_coco.py, drop_path 0.2).
# Official result: 46.8 box / 42.3 mask AP. Not reproduced here.
_base_ = './mask-rcnn_litv2-s_fpn_1x_coco.py'

model = dict(backbone=dict(model_name='litv2_m', drop_path_rate=0.2))
