"""The words the configs and architecture files accept: block types and activations (config and ArchSpec share them)."""

BLOCK_TYPES = ("mbconv", "mixconv", "fused")
#: What a supernet stage may hold: one block type, or ``choice`` among the listed options of any types.
SUPERNET_BLOCK_TYPES = BLOCK_TYPES + ("choice",)
ACTIVATIONS = ("relu", "relu6", "swish", "hswish")
