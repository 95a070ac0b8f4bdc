"""Hydra's config tree of s3nas, shipped inside the package as ``s3nas.conf`` (see pyproject.toml).

Only the YAML files matter; this file makes the directory a package so ``importlib.resources`` finds it
both in a wheel (site-packages/s3nas/conf) and in an editable install (the checkout's conf/).
"""
