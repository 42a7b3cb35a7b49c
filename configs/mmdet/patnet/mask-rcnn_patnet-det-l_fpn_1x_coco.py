# PATNet detection-L Mask R-CNN 1x (COCO): the detection-S recipe with drop_path 0.3 and lr 1e-4 (official
# mask_rcnn_partialnet_l_fpn_1x_coco.py). Official result: not published.
_base_ = './mask-rcnn_patnet-det-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='patnet_det_l', drop_path_rate=0.3),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
