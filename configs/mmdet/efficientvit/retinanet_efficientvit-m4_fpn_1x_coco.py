# EfficientViT-M4 RetinaNet 1x (COCO). Official result (their EfficientViTFPN neck): 32.7 box AP.
# Deviation: the official neck adds finer levels from the stride-16/32/64 outputs with extra transposed
# convs (num_extra_trans_convs=1); here mmdet's FPN runs on the three outputs and adds coarser levels,
# so the pyramid spans strides 16-256 and the anchors follow. Numbers not reproduced here (no GPU).
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    data_preprocessor=dict(pad_size_divisor=64),
    backbone=dict(model_name='efficientvit_m4', out_indices=(0, 1, 2), drop_path_rate=0.0),
    neck=dict(in_channels=[128, 256, 384], start_level=0, num_outs=5),
    bbox_head=dict(anchor_generator=dict(strides=[16, 32, 64, 128, 256])))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.025))
