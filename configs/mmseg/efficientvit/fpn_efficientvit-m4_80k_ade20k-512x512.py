# EfficientViT-M4 Semantic FPN 80k (ADE20K 512x512). No official segmentation recipe or result exists;
# this is the zoo's standard Semantic-FPN recipe on its 3 outputs (strides 16/32/64).
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(model_name='efficientvit_m4', out_indices=(0, 1, 2), drop_path_rate=0.0),
    neck=dict(in_channels=[128, 256, 384], num_outs=3),
    decode_head=dict(in_channels=[256, 256, 256], in_index=[0, 1, 2], feature_strides=[16, 32, 64]))
