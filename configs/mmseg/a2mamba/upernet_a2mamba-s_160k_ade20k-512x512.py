# A2Mamba-S UperNet 160k (ADE20K 512x512). A2Mamba released no segmentation code (the paper reports A2Mamba-B
# relative to CAFormer-S36); this is the zoo's standard UperNet recipe (the base) with drop_path 0.3.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='a2mamba_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm='LN2d'),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
