"""Crossover table: which path is fastest for a CUDA op call, by the call's shape, dtype and training/inference.

Each entry is a small rule of the op's tensors returning 'triton', 'torch' or 'reference' (see
:mod:`zoo.ops._dispatch`); ``ZOO_OPS`` overrides it. The rules encode the crossovers measured on a GPU, and every
number below names its measurement.

Measured on one NVIDIA H200, torch 2.11.0+cu130, triton 3.6.0, project at c4646e6 (issue 14's figures,
2026-12; `tools/benchmark.py --ops attention --dtype bf16`, bf16 autocast, ms, Triton vs the reference path):
  attention, shared table bias, 7x7 windows (EfficientViT, DaViT): fwd 0.240 vs 0.141, fwd+bwd 1.339 vs 0.809
  attention, MOAT 14x14 global windows: fwd 1.750 vs 0.936, fwd+bwd 3.544 vs 3.468
  attention, one bias per window position (Bb > 1), 8x8: fwd 0.366 vs 2.037, fwd+bwd 1.781 vs 4.084
  VOLO-D1 (outlook), batch 128, img/s: inference 2810 (Triton) vs 3919 (reference), training 1258 vs 1320
  BiFormer-T (routing), batch 128, img/s: inference 6090 vs 3858, training 1537 vs 1381
The per-call table that `python tools/gpu_check.py --out DIR` writes (DIR/op_table.json: every call the families'
smallest models make, timed under every ZOO_OPS path) is what these rules are to be checked and refined against on
the next GPU lease; this table has not yet been re-measured since (no GPU was lent to the session that wrote it).
"""
import torch

__all__ = ['RULES']


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias=None, *rest) -> str:
    # PyTorch's SDPA wins every shared-bias shape; the fused kernel wins where each window position has its
    # own bias (SDPA then needs the bias repeated over the images)
    if bias is not None and bias.dim() == 4 and bias.shape[0] > 1:
        return 'triton'
    return 'torch'


def fused(*tensors) -> str:
    # routing (BiFormer: 1.6x inference, 1.1x training, 0.62x training memory); outlook, neighborhood, selective
    # scan and channel attention not measured per op yet: the fused kernels, which never build the unfolded /
    # k*k-expanded tensors. (VOLO-D1 ran slower end to end on the Triton path, but its time is in the 14x14
    # self-attention blocks, where the attention kernel lost to the reference like MOAT's 14x14 case above;
    # attention now goes to SDPA.)
    return 'triton'


RULES = {
    'attention': attention,
    'outlook': fused,
    'routing': fused,
    'neighborhood': fused,
    'selective_scan': fused,
    'channel_attention': fused,
}
