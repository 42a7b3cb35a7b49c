# BiFormer-B UperNet 160k (ADE20K 512x512): the BiFormer-S recipe with drop_path 0.4 (official
# upernet.biformer_base.py). Official result: 51.0 mIoU (51.7 MS). Not reproduced here.
_base_ = './upernet_biformer-s_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.4),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
