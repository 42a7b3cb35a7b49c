# MOAT-0 RetinaNet 1x (COCO). MOAT released no detection code (its COCO result, 59.2 box AP, is a 227M-parameter
# model in an unreleased detector); this is the zoo's standard recipe (the base) with the official downstream
# backbone settings of the TF code: pool_size 3 in the strided shortcuts (get_model's default for downstream use),
# window attention (14 in stage 3, 7 in stage 4, padded and masked) with the last block of each MOAT stage global.
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='moat_0',
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
        model_kwargs=dict(pool_size=3, window_size=(None, None, 14, 7), global_attn_at_stage_end=True)),
    neck=dict(in_channels=[192, 384, 768]))
