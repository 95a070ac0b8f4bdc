"""How a command runs: the Hydra entry-point wrapper, loggers (W&B, CSV), Lightning callbacks and trainer
builder, console noise filters and the printed config tree."""
