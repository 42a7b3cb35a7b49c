# BiFormer-S UperNet 160k (ADE20K 512x512), the official recipe (semantic_segmentation/configs/ade20k/
# upernet.biformer_small.py, following UniFormer / CSWin): n_win 8 for the 512 crops, auto-pad,
# LayerNorm2d per output, drop_path 0.3, AdamW lr 6e-5 / wd 0.01 (no decay on norms; here every 1-D
# parameter), linear warmup 1500 iters then poly (power 1), batch 2 x 8 GPUs, fp16 (run with --amp) --
# all but the backbone settings are the zoo's UperNet base. Official result: 49.8 mIoU (50.8 MS). Not reproduced.
_base_ = '../_base_/zoo_upernet_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        model_name='biformer_small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm='LN2d',
        model_kwargs=dict(n_win=8)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
