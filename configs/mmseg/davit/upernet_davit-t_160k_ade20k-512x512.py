# DaViT-T UperNet 160k (ADE20K 512x512), the official recipe (dingmyu/davit mmseg/configs/
# upernet_davit_512x512_160k_ade20k.py): window 7, LayerNorm (eps 1e-5) per output, drop_path 0.3, AdamW lr 6e-5 /
# wd 0.01 on every parameter, warmup 1500 iters then poly (power 1), batch 2 per GPU. Official result: 46.3 mIoU.
# Not reproduced here.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='davit_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(window_size=7)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))
