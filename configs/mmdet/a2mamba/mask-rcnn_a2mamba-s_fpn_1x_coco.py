# A2Mamba-S Mask R-CNN 1x (COCO). A2Mamba released no detection code or absolute numbers (the paper reports Cascade
# Mask R-CNN results relative to MambaVision); this is the zoo's standard recipe (the base) with drop_path 0.3. The
# backbone pads maps smaller than a window inside its mixer, so every FPN level works at any input size.
_base_ = '../_base_/zoo_mask-rcnn_1x_coco.py'

model = dict(
    backbone=dict(
        model_name='a2mamba_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm='LN2d'),
    neck=dict(in_channels=[64, 128, 320, 512]))
