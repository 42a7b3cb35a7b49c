# DaViT-T RetinaNet 3x (COCO): the 1x recipe with drop_path 0.2 over 36 epochs, lr steps at 27 and 33 (official
# davit_retinanet_3x_coco.py). Official result: 46.5 box AP. Not reproduced here.
_base_ = './retinanet_davit-t_fpn_ms-crop-1x_coco.py'

model = dict(backbone=dict(drop_path_rate=0.2))
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
