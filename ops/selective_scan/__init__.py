"""``zoo.ops.selective_scan``: the all-states selective scan of A2Mamba's A2SSM (replaces the custom
CUDA extension ``selective_scan_cuda_oflex_rh``).

    selective_scan_states(u, delta, A, B, delta_bias=None, delta_softplus=True) -> h [B, D, N, L] (fp32)

See :mod:`.reference` for the exact definition. On CUDA with Triton the fused kernels run (forward and
backward, one program per (batch, channel block)); elsewhere the chunked reference runs.
"""
from typing import Optional, Tuple

import torch

from .._dispatch import HAS_TRITON, check_triton_inputs, choose_path
from .._dispatch_table import RULES
from .reference import selective_scan_loop, selective_scan_states_reference

__all__ = ['selective_scan_states', 'selective_scan_states_reference', 'selective_scan_loop',
           'selective_scan_states_triton']


def selective_scan_states(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          delta_bias: Optional[torch.Tensor] = None, delta_softplus: bool = True) -> torch.Tensor:
    """Every hidden state h_t of h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, dt = softplus(delta + bias)."""
    if choose_path('selective_scan', (u, delta, A, B, delta_bias), RULES['selective_scan']) == 'triton':
        return selective_scan_states_triton(u, delta, A, B, delta_bias, delta_softplus)
    return selective_scan_states_reference(u, delta, A, B, delta_bias, delta_softplus)


def selective_scan_states_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                                 delta_bias: Optional[torch.Tensor] = None,
                                 delta_softplus: bool = True) -> torch.Tensor:
    """The fused path, callable directly (tests run it on CPU under ``TRITON_INTERPRET=1``). N = 1 only."""
    check_triton_inputs('selective_scan_states', u, delta, A, B, delta_bias)
    if B.dim() == 4:
        B = B[:, 0]
    Bt, D, L = u.shape
    if delta.shape != u.shape or A.shape != (D, 1) or B.shape != (Bt, 1, L):
        raise ValueError(f'selective_scan (Triton, N = 1): u {tuple(u.shape)}, delta {tuple(delta.shape)}, '
                         f'A {tuple(A.shape)}, B {tuple(B.shape)} do not fit')
    if delta_bias is None:
        delta_bias = u.new_zeros(D)
    return torch.ops.zoo.selective_scan_states(u, delta, A, B, delta_bias, bool(delta_softplus))


# ----------------------------------------------------------------------------------------------
# launchers and torch.library registration (only the Triton path goes through the custom ops)

def _blocks(D: int, L: int):
    return dict(BLOCK_D=min(32, max(2, _triton.next_power_of_2(D))),
                BLOCK_L=min(64, max(2, _triton.next_power_of_2(L))))


def _fwd_impl(u, delta, A, B, bias, softplus):
    Bt, D, L = u.shape
    out = torch.empty((Bt, D, 1, L), device=u.device, dtype=torch.float32)
    blk = _blocks(D, L)
    grid = (_triton.cdiv(D, blk['BLOCK_D']), Bt)
    _tk.scan_fwd_kernel[grid](u.contiguous(), delta.contiguous(), A.reshape(D).contiguous(), B.contiguous(),
                              bias.contiguous(), out, D, L, SOFTPLUS=softplus, **blk)
    return out


def _bwd_impl(dout, u, delta, A, B, bias, out, softplus):
    Bt, D, L = u.shape
    blk = _blocks(D, L)
    n_dblk = _triton.cdiv(D, blk['BLOCK_D'])
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty((Bt, D, L), **f32), torch.empty((Bt, D, L), **f32)
    dA_part, dbias_part = torch.empty((Bt, D), **f32), torch.empty((Bt, D), **f32)
    dB_part = torch.empty((Bt, n_dblk, L), **f32)
    _tk.scan_bwd_kernel[(n_dblk, Bt)](
        u.contiguous(), delta.contiguous(), A.reshape(D).contiguous(), B.contiguous(), bias.contiguous(),
        out.contiguous(), dout.contiguous(), du, ddelta, dA_part, dbias_part, dB_part, D, L,
        SOFTPLUS=softplus, **blk)
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA_part.sum(0).view_as(A).to(A.dtype),
            dB_part.sum(1, keepdim=True).to(B.dtype), dbias_part.sum(0).to(bias.dtype))


if HAS_TRITON:
    # the kernels' module is named triton.py (the house layout); importing it binds the name
    # `triton` in this package to that submodule, so the library is imported as _triton
    import triton as _triton  # noqa: E402,I001

    from . import triton as _tk

    @torch.library.custom_op('zoo::selective_scan_states', mutates_args=())
    def _scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, delta_bias: torch.Tensor,
              softplus: bool) -> torch.Tensor:
        return _fwd_impl(u, delta, A, B, delta_bias, softplus)

    @_scan.register_fake
    def _(u, delta, A, B, delta_bias, softplus):
        return u.new_empty((u.shape[0], u.shape[1], 1, u.shape[2]), dtype=torch.float32)

    @torch.library.custom_op('zoo::selective_scan_states_bwd', mutates_args=())
    def _scan_bwd(dout: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                  delta_bias: torch.Tensor, out: torch.Tensor, softplus: bool
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return _bwd_impl(dout, u, delta, A, B, delta_bias, out, softplus)

    @_scan_bwd.register_fake
    def _(dout, u, delta, A, B, delta_bias, out, softplus):
        return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
                torch.empty_like(delta_bias))

    def _setup_context(ctx, inputs, output):
        u, delta, A, B, delta_bias, softplus = inputs
        ctx.softplus = softplus
        ctx.save_for_backward(u, delta, A, B, delta_bias, output)

    def _backward(ctx, dout):
        u, delta, A, B, delta_bias, out = ctx.saved_tensors
        du, ddelta, dA, dB, dbias = torch.ops.zoo.selective_scan_states_bwd(
            dout.contiguous(), u, delta, A, B, delta_bias, out, ctx.softplus)
        return du, ddelta, dA, dB, dbias, None

    _scan.register_autograd(_backward, setup_context=_setup_context)
