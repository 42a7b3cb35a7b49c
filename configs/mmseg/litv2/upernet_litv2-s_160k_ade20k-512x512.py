# LITv2-S UperNet 160k (ADE20K 512x512). LITv2 released no UperNet recipe or result; this is the zoo's standard
# UperNet recipe (the base) with LITv2's dense-prediction backbone settings: local_ws 0,0,2,1, LayerNorm
# (eps 1e-5) per output, drop_path 0.2.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='litv2_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(local_ws=(0, 0, 2, 1), alpha=0.9)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
