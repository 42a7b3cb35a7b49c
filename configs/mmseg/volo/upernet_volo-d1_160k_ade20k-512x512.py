# VOLO-D1 UperNet 160k (ADE20K 512x512). VOLO released no segmentation code (sail-sg/volo#32); its abstract reports
# 54.3 mIoU on ADE20K without naming the recipe. This is the zoo's standard UperNet recipe (the base) on VOLO's simple
# pyramid, position embedding built for the 512 crops (img_size) and resized for other sizes (dynamic_img_size).
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='volo_d1_224',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        model_kwargs=dict(img_size=512, dynamic_img_size=True)),
    decode_head=dict(in_channels=[192, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))
