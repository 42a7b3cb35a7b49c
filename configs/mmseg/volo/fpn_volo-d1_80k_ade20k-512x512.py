# VOLO-D1 Semantic FPN 80k (ADE20K 512x512). No official segmentation code or recipe; the zoo's standard
# Semantic-FPN recipe (the base) on VOLO's simple pyramid, position embedding built for the 512 crops.
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='volo_d1_224',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        model_kwargs=dict(img_size=512, dynamic_img_size=True)),
    neck=dict(in_channels=[192, 192, 384, 384]))
