"""Eval-mode weight folding with a cache (EfficientViT's BN folding, OverLoCK's dilated re-parameterisation)."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from zoo.ops._dispatch import in_graph_capture as _in_graph_capture

__all__ = ['FoldedBN']


class FoldedBN(nn.Module):
    """Base for a linear op followed by BatchNorm: in eval mode the BN is folded into the weights.

    The fold is cached while no source tensor changes: in-place updates (an optimizer step, an EMA
    update, ``load_state_dict``) bump the tensors' version counters and replacing the weight tensor
    changes its identity; either rebuilds the fold. When autograd is recording, the fold is built in
    the graph every call, so gradients still reach the un-folded parameters (e.g. fine-tuning with
    frozen BN statistics). Tracing (ONNX / TorchScript) also folds in the graph.
    """
    _fold_src: Optional[Tuple[torch.Tensor, ...]] = None
    _fold_ver: Tuple[int, ...] = ()
    _fold_out: Tuple[torch.Tensor, torch.Tensor] = ()

    def _fold_sources(self) -> Tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() / .cuda() swap the parameters' storage (``param.data = ...``) without
        # bumping their version counters: drop the fold so it is rebuilt from the new tensors
        self._fold_src = None
        return super()._apply(fn, *args, **kwargs)

    def _compute_fold(self, src: Tuple[torch.Tensor, ...], scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _folded(self, scale: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        src = self._fold_sources()
        if (torch.is_grad_enabled() and any(t.requires_grad for t in src)) or _in_graph_capture():
            return self._compute_fold(src, scale)
        cached = self._fold_src
        ver = tuple(t._version for t in src) + (scale,)
        if cached is None or cached[0] is not src[0] or ver != self._fold_ver:
            # a plain tensor even inside inference_mode: an inference tensor as a conv weight could not be saved
            # for backward by a later call that differentiates through the input (frozen weights)
            with torch.inference_mode(False), torch.no_grad():
                self._fold_out = self._compute_fold(src, scale)
            self._fold_src, self._fold_ver = src, ver
        return self._fold_out
