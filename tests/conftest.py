"""Test-wide settings.

* ``TRITON_INTERPRET=1`` must be in the environment before any ``@triton.jit`` function is
  defined, so it is set here, before the tests import ``zoo``: without a GPU the Triton
  kernels then run (slowly) in Triton's interpreter on CPU tensors. With a GPU the kernels
  run natively and the CUDA-only tests are enabled.
* One OpenMP thread: two threads are unstable on the shared 2-core CI machines, and the
  tests use small models where one thread is as fast.
"""
import contextlib
import os

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault('TRITON_INTERPRET', '1')
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
os.environ.setdefault('WANDB_MODE', 'offline')
torch.set_num_threads(1)

import pytest  # noqa: E402

FIXTURES = os.environ.get(
    'ZOO_FIXTURES', os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, 'shared', 'fixtures'))


@pytest.fixture(scope='session')
def fixtures_dir():
    """../shared/fixtures (or $ZOO_FIXTURES); tests that need it skip cleanly when it is absent."""
    if not os.path.isdir(FIXTURES):
        pytest.skip(f'parity fixtures not found at {FIXTURES} (set ZOO_FIXTURES)')
    return FIXTURES


@pytest.fixture
def capture_paths(monkeypatch):
    """``with capture_paths(module, ...):`` runs those modules' export / compile code paths in eager mode (their
    ``_in_graph_capture`` reports True), so a test can hold them to the normal paths."""
    @contextlib.contextmanager
    def run(*modules):
        with monkeypatch.context() as patch:
            for module in modules:
                patch.setattr(module, '_in_graph_capture', lambda: True)
            yield
    return run
