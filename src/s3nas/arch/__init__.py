"""Architecture specification (ArchSpec) and its codecs."""
from s3nas.arch.spec import ACTIVATIONS, BLOCK_TYPES, ArchSpec, BlockSpec, Branch

__all__ = ["ACTIVATIONS", "BLOCK_TYPES", "ArchSpec", "BlockSpec", "Branch"]
