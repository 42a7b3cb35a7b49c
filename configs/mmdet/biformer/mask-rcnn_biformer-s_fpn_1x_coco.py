# BiFormer-S Mask R-CNN 1x (COCO), the official recipe (maskrcnn.1x.biformer_small.py, which follows
# UniFormer): n_win 16 with auto-pad, LayerNorm2d per output, BatchNorm statistics frozen (norm_eval),
# drop_path 0.2, AdamW lr 1e-4 / wd 0.05 without decay on norms (here: on every 1-D parameter), fp16
# (run with --amp). Official result: 47.8 box / 43.2 mask AP (README; 48.1 / 43.6 reproduced). Not reproduced here.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='biformer_small',
        out_indices=(0, 1, 2, 3),
        norm_eval=True,
        drop_path_rate=0.2,
        out_norm='LN2d',
        model_kwargs=dict(n_win=16)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=1.0))
