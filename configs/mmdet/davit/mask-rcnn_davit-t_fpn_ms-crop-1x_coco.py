# DaViT-T Mask R-CNN 1x (COCO), the official recipe (dingmyu/davit mmdet/configs/davit_maskrcnn_1x_coco.py):
# window 7, a LayerNorm (eps 1e-5) on every output (`norm{i}`), drop_path 0.1, AdamW lr 1e-4 / wd 0.05 on every
# parameter, and the Swin multi-scale + random-crop training pipeline (written here in mmdet 3.x transforms).
# Official result: 45.0 box / 41.1 mask AP. Not reproduced here.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='davit_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        out_norm=dict(_delete_=True, type='LN2d', eps=1e-5),  # the base has None here
        model_kwargs=dict(window_size=7)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_1d=False))

_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333), (704, 1333),
           (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)]]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
