"""weights/<family>.json stay in sync with the families' default_cfgs (regenerate: python -m zoo.weights --write)."""
import json
import os

from zoo.weights import MANIFEST_DIR, build_manifests


def test_manifests_match_the_registered_cfgs():
    built = build_manifests()
    for family, manifest in built.items():
        path = os.path.join(MANIFEST_DIR, f'{family}.json')
        assert os.path.exists(path), f'missing {path}: run python -m zoo.weights --write'
        with open(path) as f:
            on_disk = json.load(f)
        assert on_disk == json.loads(json.dumps(manifest)), f'{path} is stale: run python -m zoo.weights --write'


def test_every_manifest_entry_names_a_converter_that_exists():
    import importlib
    for manifest in build_manifests().values():
        module, _, fn = manifest['converter'].rpartition('.')
        assert callable(getattr(importlib.import_module(module), fn))
