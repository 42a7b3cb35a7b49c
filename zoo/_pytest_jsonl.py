"""A pytest plugin for ``zoo gpu-check``: one JSON line per test outcome, written as it happens.

Loaded with ``-p zoo._pytest_jsonl`` and ``ZOO_PYTEST_JSONL=<file>``. Each finished phase that
failed or was skipped, and each passed call, is appended at once, with its short failure text, so
a run that is killed at its time limit still leaves every result it reached. Under pytest-xdist
only the controller writes (it sees every worker's reports).
"""
import json
import os

_config = None


def pytest_configure(config):
    global _config
    _config = config


def pytest_runtest_logreport(report):
    path = os.environ.get('ZOO_PYTEST_JSONL')
    if not path or (_config is not None and hasattr(_config, 'workerinput')):
        return
    if report.passed and report.when != 'call':
        return
    outcome = report.outcome if report.when == 'call' or report.passed else (
        'error' if report.failed else 'skipped')
    row = dict(nodeid=report.nodeid, when=report.when, outcome=outcome, seconds=round(report.duration, 3))
    if not report.passed:
        text = report.longreprtext or ''
        row['message'] = text[-4000:]
    with open(path, 'a') as f:
        f.write(json.dumps(row) + '\n')
