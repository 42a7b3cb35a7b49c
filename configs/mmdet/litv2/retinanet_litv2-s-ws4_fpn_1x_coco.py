# LITv2-S RetinaNet 1x (COCO) with HiLo local window 4 in stage 3 (official retinanet_litv2_s_fpn_1x_coco_ws_4.py).
# Official result: 43.7 box AP. Not reproduced here.
_base_ = './retinanet_litv2-s_fpn_1x_coco.py'

model = dict(backbone=dict(model_kwargs=dict(local_ws=(0, 0, 4, 1))))
