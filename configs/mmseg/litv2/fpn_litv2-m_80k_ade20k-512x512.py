# LITv2-M Semantic FPN 80k (ADE20K 512x512): the LITv2-S recipe (official litv2_m_fpn_r50_512x512_80k_ade20k.py,
# drop_path 0.2). Official result: 45.7 mIoU. Not reproduced here.
_base_ = './fpn_litv2-s_80k_ade20k-512x512.py'

model = dict(backbone=dict(model_name='litv2_m', drop_path_rate=0.2))
