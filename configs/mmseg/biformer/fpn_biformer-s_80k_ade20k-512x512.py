# BiFormer-S Semantic FPN 80k (ADE20K 512x512), the official recipe (sfpn.biformer_small.py, following
# UniFormer with 8 GPUs instead of 4: lr x2, iterations / 2): n_win 8, auto-pad, LayerNorm2d per output,
# drop_path 0.15, AdamW lr 2e-4 / wd 1e-4, linear warmup 1000 iters from 0.1x then cosine to ~0, batch 4 x 8 GPUs,
# fp16 (run with --amp). Official result: 48.9 mIoU. Not reproduced here.
_base_ = '../_base_/zoo_fpn_80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='biformer_small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        out_norm='LN2d',
        model_kwargs=dict(n_win=8)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-8, by_epoch=False, begin=1000, end=80000),
]
train_dataloader = dict(batch_size=4)
