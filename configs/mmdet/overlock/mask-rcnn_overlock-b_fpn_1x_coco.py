# OverLoCK-B Mask R-CNN 1x (COCO), after the official recipe (LMMMEng/OverLoCK detection/, mmdet 2.28): AdamW lr 2e-4,
# wd 0.05, LayerNorm2d on each output (the official extra_norm), drop_path 0.4 (0.2 is stated for T; S/B follow the
# usual depth scaling, unverified). The official stage-4 output also adds a 1x1 h_proj of the context branch, which is
# not in the classification weights and is left out here. Stage-3/4 widths are the dense layout (C2 + C3/4, C3 + C3/4).
# Official result: 49.9 / 44.4 box / mask AP (3x: 51.4 / 45.3). Not reproduced here.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='overlock_b',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        out_norm='LN2d'),
    neck=dict(in_channels=[80, 160, 528, 720]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=1.0))
