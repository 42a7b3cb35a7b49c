"""Autotuning configurations for the Triton kernels: a search space on a GPU, one fixed config in the interpreter.

``@triton.autotune`` benchmarks every config on the first launch for each key (the problem sizes) and caches the
winner; under ``TRITON_INTERPRET=1`` (CPU tests) there is nothing to time and multi-config autotuning needs a GPU,
so the kernels get the single config they were written with.
"""
import itertools
import os

import triton

__all__ = ['INTERPRETED', 'configs']

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'


def configs(space: dict, interpreted: dict) -> list:
    """triton.Config for every combination of ``space`` (kernel meta-parameters plus num_warps / num_stages), or
    just ``interpreted`` under the interpreter."""
    def make(params):
        params = dict(params)
        return triton.Config({k: v for k, v in params.items() if k not in ('num_warps', 'num_stages')},
                             num_warps=params.get('num_warps', 4), num_stages=params.get('num_stages', 2))
    if INTERPRETED:
        return [make(interpreted)]
    keys = list(space)
    return [make(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
