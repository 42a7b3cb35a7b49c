# BiFormer-S RetinaNet 1x (COCO), the official recipe (rayleizhu/BiFormer
# object_detection/configs/coco/retinanet.1x.biformer_small.py): n_win 16 with auto-pad (the zoo model
# always pads), a LayerNorm2d on every output (BiFormer_mm `extra_norms`), BatchNorm statistics frozen
# (norm_eval), drop_path 0.2, AdamW lr 1e-4 / wd 1e-4 on every parameter, fp16 (run with --amp).
# The official FPN reads all four levels with start_level=1; reading levels 1-3 here is the same network
# without the unused stride-4 output. Official result: 45.9 box AP (README; 47.3 reproduced). Not reproduced here.
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='biformer_small',
        out_indices=(1, 2, 3),
        norm_eval=True,
        drop_path_rate=0.2,
        out_norm='LN2d',
        model_kwargs=dict(n_win=16)),
    neck=dict(in_channels=[128, 256, 512]))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))
