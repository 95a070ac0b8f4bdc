"""`python search.py latency=2.5ms`: latency-aware architecture search (S3NAS) on a simulated NPU.

A thin wrapper of the ``s3nas-search`` console script (``s3nas.search.app``): same config (conf/search.yaml),
same overrides, same outputs.
"""

from s3nas.search.app import main

if __name__ == "__main__":
    main()
