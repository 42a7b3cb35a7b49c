# Mask R-CNN 1x (COCO) with a zoo backbone: mmdet's own base configs + what the zoo adds.
# A family config sets model.backbone.model_name / out_indices and model.neck.in_channels (and the
# RPN anchor / RoI feature strides when its strides differ from 4-32). See configs/README.md.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='zoo.Backbone',
        model_name=None,  # set by the family config
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32 for a 4-stage backbone
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        pretrained=True,
        drop_path_rate=0.1,
        out_norm=None,
        model_kwargs=dict()),
    neck=dict(in_channels=None))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='zoo.LayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=None)
