"""Selective SE removal (S3NAS 4.3.3): ``python -m s3nas.postsearch.se_removal run_dir=<train run> fraction=0.4``.

Scores every SE block of a trained network by how much its excitation varies across images and writes the network
without the lowest-scoring ones (arch.json, to be retrained), scores.csv and summary.json: ``s3nas.postsearch.
selective_se``, whose check and task this command names, so that it imports torch only when it runs them.
"""

from __future__ import annotations

from s3nas.runtime.entry import run


def cli() -> None:
    """Console script ``s3nas-se-removal`` (also ``python -m s3nas.postsearch.se_removal``)."""
    run("s3nas.postsearch.selective_se:main", "se_removal", check="s3nas.postsearch.selective_se:check")


if __name__ == "__main__":
    cli()
