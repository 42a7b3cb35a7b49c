# MOAT-0 UperNet 160k (ADE20K 512x512). MOAT released no segmentation code (its ADE20K result, 57.6 mIoU, is a
# 496M-parameter model in an unreleased segmenter); the zoo's standard recipe (the base) with the TF code's downstream
# backbone settings: pool_size 3, window attention 14 / 7 in stages 3 / 4, the last block of each MOAT stage global.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='moat_0',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        model_kwargs=dict(pool_size=3, window_size=(None, None, 14, 7), global_attn_at_stage_end=True)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
