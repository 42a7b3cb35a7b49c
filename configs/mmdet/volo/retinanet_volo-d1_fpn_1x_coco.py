# VOLO-D1 RetinaNet 1x (COCO). VOLO released no detection code or result (sail-sg/volo#3); this is the zoo's standard
# recipe (the base) on VOLO's simple pyramid: the stride-8 outlooker map (upsampled for stride 4) and the stride-16
# transformer map (max-pooled for stride 32). dynamic_img_size pads any input to 16 and resizes the position
# embedding, so detection sizes work.
_base_ = '../_base_/zoo_retinanet_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='volo_d1_224',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        model_kwargs=dict(dynamic_img_size=True)),
    neck=dict(in_channels=[192, 384, 384]))
