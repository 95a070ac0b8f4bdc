"""The words the configs and architecture files accept: block types and activations (config and ArchSpec share them)."""

BLOCK_TYPES = ("mbconv", "mixconv", "fused")
ACTIVATIONS = ("relu", "relu6", "swish", "hswish")
