"""`python train.py arch=<arch.json | search run dir | timm:<name>>`: retrain a network with the paper's recipe.

A thin wrapper of the ``s3nas-train`` console script (``s3nas.train.app``): same config (conf/train.yaml),
same overrides, same outputs.
"""

from s3nas.train.app import main

if __name__ == "__main__":
    main()
