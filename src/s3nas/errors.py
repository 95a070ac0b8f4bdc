"""User-facing errors: anything a user can cause (config, paths, targets, files).

Entry points catch ``UserError`` and print its message as one line (no traceback), exiting non-zero.
Messages name the key and the accepted values, e.g. ``latency: 'fast' is not a latency; use 2.5ms, ...``.
"""


class UserError(Exception):
    """An error caused by user input; printed as one line by the entry points."""

    exit_code = 2


class ConfigError(UserError):
    """A config value is invalid (message names the key and the accepted values)."""


class DataError(UserError):
    """A dataset root is missing, empty or malformed."""


class InfeasibleTargetError(UserError):
    """The latency target cannot be met by any architecture of the search space."""
