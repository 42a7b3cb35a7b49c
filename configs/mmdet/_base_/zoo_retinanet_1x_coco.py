# RetinaNet 1x (COCO) with a zoo backbone: mmdet's own base configs + what the zoo adds.
# A family config sets model.backbone.model_name / out_indices, model.neck.in_channels (and
# start_level / anchor strides when its strides differ from 8-32). See configs/README.md.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='zoo.Backbone',
        model_name=None,  # set by the family config
        out_indices=(1, 2, 3),  # strides 8, 16, 32 for a 4-stage backbone
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        pretrained=True,  # ImageNet weights from the model's default source; or a local file / URL
        drop_path_rate=0.1,
        out_norm=None,
        model_kwargs=dict()),
    neck=dict(in_channels=None, start_level=0, add_extra_convs='on_input', num_outs=5))

# AdamW with layer-wise lr decay (1.0 = none) and no weight decay on norms / biases
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='zoo.LayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=None)
