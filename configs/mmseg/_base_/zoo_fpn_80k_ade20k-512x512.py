# Semantic FPN 80k (ADE20K, 512x512) with a zoo backbone: mmseg's own base configs + what the zoo adds
# (the PVT / LITv2 Semantic-FPN recipe: AdamW 1e-4, wd 1e-4, poly power 0.9).
# A family config sets model.backbone.model_name / out_indices and neck.in_channels. See configs/README.md.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)

model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='zoo.Backbone',
        model_name=None,  # set by the family config
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        pretrained=True,
        drop_path_rate=0.1,
        out_norm=None,
        model_kwargs=dict()),
    neck=dict(in_channels=None, num_outs=4),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='zoo.LayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=None)
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000, by_epoch=False)]
train_dataloader = dict(batch_size=2)
