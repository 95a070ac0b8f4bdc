"""Filter known third-party noise from the console; real warnings still show.

Filtered: Lightning's tips and accelerator inventory lines, its "few workers" / "logging interval" hints for
the small embedded dataset, torch's pytree deprecation chatter raised inside Lightning, and W&B's
anonymous-mode notice. Everything else (including every warning s3nas raises) is left alone.
"""

from __future__ import annotations

import logging
import warnings

#: Message patterns of warnings that carry no information for an s3nas user.
NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*is smaller than the logging interval.*",
    r".*anonymous.*",
    r".*`torch.cuda.amp.GradScaler\(args...\)` is deprecated.*",
    r".*Checkpoint directory .* exists and is not empty.*",
)
#: Lightning info lines that are tips or inventory, not results.
NOISY_LOG_PREFIXES = ("💡 Tip", "GPU available", "TPU available", "HPU available", "IPU available")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(NOISY_LOG_PREFIXES)


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
