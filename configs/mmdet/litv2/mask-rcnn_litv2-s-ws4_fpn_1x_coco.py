# LITv2-S Mask R-CNN 1x (COCO) with HiLo local window 4 in stage 3 (official mask_rcnn_litv2_s_fpn_1x_coco_ws_4.py).
# Official result: 44.7 box / 40.7 mask AP. Not reproduced here.
_base_ = './mask-rcnn_litv2-s_fpn_1x_coco.py'

model = dict(backbone=dict(model_kwargs=dict(local_ws=(0, 0, 4, 1))))
