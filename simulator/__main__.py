"""``python -m simulator``: see ``simulator.cli``."""

import sys

from simulator.cli import main

if __name__ == "__main__":
    # timm imports wandb (for its training summaries) and huggingface_hub (for pretrained weights) when
    # they are installed: over a second of a cold ``timm:`` call. This process neither logs to W&B nor
    # downloads weights (models are built with pretrained=False), so hide both: ``import`` then raises
    # ImportError, which timm handles. Only here: an in-process ``cli.main`` leaves the caller's modules alone.
    for optional in ("wandb", "huggingface_hub"):
        sys.modules.setdefault(optional, None)
    sys.exit(main())
