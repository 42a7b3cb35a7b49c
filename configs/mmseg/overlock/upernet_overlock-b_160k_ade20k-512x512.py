# OverLoCK-B UperNet 160k (ADE20K 512x512), after the official recipe (LMMMEng/OverLoCK segmentation/, mmseg 0.30):
# AdamW lr 6e-5, batch 8 x 2, LayerNorm2d on each output (the official extra_norm), drop_path 0.4 (unverified for
# S/B); the rest is the zoo's UperNet base. Official result: 51.7 mIoU. Not reproduced here.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='overlock_b',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        out_norm='LN2d'),
    decode_head=dict(in_channels=[80, 160, 528, 720]),
    auxiliary_head=dict(in_channels=528))
