# EfficientViT-M4 Mask R-CNN 1x (COCO). Official result (their EfficientViTFPN neck): 31.0 mask AP.
# Deviation as in the RetinaNet config: mmdet's FPN over strides 16/32/64 (+ coarser levels), so the
# RPN anchors and RoI extractors use strides 16-256 instead of the official 4-64.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    data_preprocessor=dict(pad_size_divisor=64),
    backbone=dict(model_name='efficientvit_m4', out_indices=(0, 1, 2), drop_path_rate=0.0),
    neck=dict(in_channels=[128, 256, 384], num_outs=5),
    rpn_head=dict(anchor_generator=dict(strides=[16, 32, 64, 128, 256])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[16, 32, 64, 128]),
        mask_roi_extractor=dict(featmap_strides=[16, 32, 64, 128])))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.025))
