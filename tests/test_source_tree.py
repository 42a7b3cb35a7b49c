"""A source checkout runs before ``pip install``: ``python -c "import zoo"`` in the repository root and
``python tools/train.py`` import the package from the tree (``zoo.models`` / ``zoo.ops`` from ``models/`` / ``ops/``).

The checks run in a copy of the tree, in a Python that cannot see any installed zoo: ``-S`` skips site-packages'
``.pth`` files (where an editable install hooks in its finder), and ``PYTHONPATH`` gives back this interpreter's
library folders (torch, timm, ...) minus any that hold a ``zoo``. The first check proves that isolation holds, so the
test means the same in CI (zoo installed editable) as on a machine without it.
"""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_path():
    keep = []
    for p in sys.path:
        p = os.path.abspath(p) if p else os.getcwd()
        # the repository's own folders go (a venv inside the checkout, as CI's .venv, stays: it holds torch, timm)
        in_sources = p == REPO or (p.startswith(REPO + os.sep) and 'site-packages' not in p)
        if os.path.isdir(p) and not os.path.exists(os.path.join(p, 'zoo')) and not in_sources:
            keep.append(p)
    return os.pathsep.join(keep)


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=_library_path(), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-S', *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope='module')
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp('checkout')
    for folder in ('zoo', 'models', 'ops', 'tools'):
        shutil.copytree(os.path.join(REPO, folder), root / folder, ignore=shutil.ignore_patterns('__pycache__'))
    return root


def test_isolated_python_has_no_zoo(checkout):
    r = _run(['-c', 'import importlib.util; assert importlib.util.find_spec("zoo") is None'], cwd=checkout.parent)
    assert r.returncode == 0, r.stderr


def test_import_zoo_from_the_repository_root(checkout):
    code = ('import sys, zoo, zoo.models.moat, zoo.ops.attention; '
            'print(zoo.__file__); print(zoo.models.moat.__file__); print(sys.modules["zoo.ops.attention"].__file__); '
            'print(len(zoo.list_models()))')
    r = _run(['-c', code], cwd=checkout)
    assert r.returncode == 0, r.stderr
    *files, count = r.stdout.split()
    assert all(f.startswith(str(checkout)) for f in files), files  # the whole package from this one tree
    assert int(count) > 50


def test_tool_runs_from_a_checkout(checkout):
    r = _run([os.path.join('tools', 'train.py'), '--help'], cwd=checkout)
    assert r.returncode == 0, r.stderr
    assert 'usage: zoo train' in r.stdout


def test_incomplete_checkout_says_what_is_missing(checkout, tmp_path):
    shutil.copytree(checkout / 'zoo', tmp_path / 'zoo', ignore=shutil.ignore_patterns('__pycache__'))
    r = _run(['-c', 'import zoo'], cwd=tmp_path)
    assert r.returncode != 0 and 'is incomplete' in r.stderr and 'pip install -e .' in r.stderr, r.stderr
