"""Baselines and comparison (paper 5.3, 5.4.1): the model zoo on every simulated NPU, random search, random
selection, the Pareto plot and the Table 6-style comparison report.

Entry points (Hydra apps of the same family as search.py): ``python -m s3nas.baselines.zoo``,
``python -m s3nas.baselines.random_search latency=2.5ms``, ``python -m s3nas.baselines.random_selection
latency=2.5ms``, ``python -m s3nas.baselines.compare runs=[dir,...]``.
"""
