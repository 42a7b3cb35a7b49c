"""Package discovery only; metadata, dependencies and extras live in setup.cfg.

The project keeps `models/` and `ops/` as top-level folders but installs them inside the
single import namespace `zoo` (`zoo.models`, `zoo.ops`): no top-level `models` or `ops`
package is ever installed. Sub-packages are found automatically.
"""
from setuptools import find_packages, setup

NAMESPACE_DIRS = {'zoo': 'zoo', 'zoo.models': 'models', 'zoo.ops': 'ops'}

packages = []
for prefix, folder in NAMESPACE_DIRS.items():
    packages.append(prefix)
    packages += [f'{prefix}.{sub}' for sub in find_packages(folder)]

setup(packages=packages, package_dir=NAMESPACE_DIRS)
