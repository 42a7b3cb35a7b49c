# DaViT-T Semantic FPN 80k (ADE20K 512x512). DaViT released UperNet only; this is the zoo's standard Semantic-FPN
# recipe (the base) with DaViT's dense-prediction backbone settings (window 7, LayerNorm per output; drop_path 0.2).
# No official result.
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='davit_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(window_size=7)),
    neck=dict(in_channels=[96, 192, 384, 768]))
