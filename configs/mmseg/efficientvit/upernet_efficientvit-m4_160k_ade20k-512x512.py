# EfficientViT-M4 UperNet 160k (ADE20K 512x512). No official segmentation recipe or result exists
# (EfficientViT released detection only); this is the zoo's standard UperNet recipe on its 3 outputs.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(model_name='efficientvit_m4', out_indices=(0, 1, 2), drop_path_rate=0.0),
    decode_head=dict(in_channels=[128, 256, 384], in_index=[0, 1, 2], channels=256),
    auxiliary_head=dict(in_channels=256, in_index=1, channels=128))
