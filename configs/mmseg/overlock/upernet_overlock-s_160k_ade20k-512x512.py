# OverLoCK-S UperNet 160k (ADE20K 512x512), after the official recipe (LMMMEng/OverLoCK segmentation/, mmseg 0.30):
# AdamW lr 6e-5, batch 8 x 2, LayerNorm2d on each output (the official extra_norm), drop_path 0.3 (unverified for
# S/B); the rest is the zoo's UperNet base. Official result: 51.3 mIoU. Not reproduced here.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='overlock_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm='LN2d'),
    decode_head=dict(in_channels=[64, 128, 448, 640]),
    auxiliary_head=dict(in_channels=448))
