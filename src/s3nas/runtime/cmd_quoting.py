"""Device commands on the command line: ``hardware.cmd=python bench.py {onnx}`` reaches the config verbatim.

A shell strips the quotes of ``hardware.cmd='python bench.py {onnx}'``, and Hydra's override grammar refuses
``{``, ``(``, ``,`` ... in an unquoted value. ``quote_command_overrides(argv)`` (called by
``s3nas.runtime.entry.run`` before Hydra reads ``sys.argv``) wraps the value of every ``hardware.cmd`` override
(also ``+``/``++`` and ``hardware.<i>.cmd``) in Hydra quotes, escaped per the grammar (a quote of the same kind
and the backslashes right before a quote or at the end are escaped with a backslash), unless it is already one
quoted value, ``null``, a sweep Hydra can parse written with the user's own quotes (``'cmd a','cmd b'``; in a
multirun any sweep, and any value that starts with a quote).
``${...}`` interpolations in a command stay interpolations. ``parse_error_message`` turns Hydra's parse error
of a ``hardware.cmd`` override that is still malformed into one line showing the quoting that works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException

#: ``[+|++]hardware.cmd=...`` or ``[+|++]hardware.<i>.cmd=...`` (hardware as a list element).
CMD_OVERRIDE = re.compile(r"^(?P<key>\+{0,2}hardware(?:\.\d+)?\.cmd)=(?P<value>.*)$", re.DOTALL)
#: Hydra's multirun switches.
MULTIRUN_FLAGS = ("-m", "--multirun")
#: The command line that works whatever the shell does with quotes (shown in error messages).
QUOTING_EXAMPLE = "\"hardware.cmd='python bench.py {onnx}'\""

_PARSER: OverridesParser | None = None


def hydra_quote(text: str) -> str:
    """``text`` as one Hydra quoted value: single quotes unless the text holds ``'`` and no ``"``."""
    quote = '"' if "'" in text and '"' not in text else "'"
    out, backslashes = [quote], 0
    for char in text:
        if char == "\\":
            backslashes += 1
            continue
        if char == quote:  # backslashes before a quote are doubled, and the quote is escaped
            out.append("\\" * (2 * backslashes) + "\\" + char)
        else:
            out.append("\\" * backslashes + char)
        backslashes = 0
    out.append("\\" * (2 * backslashes))  # trailing backslashes would escape the closing quote
    out.append(quote)
    return "".join(out)


def is_quoted(value: str) -> bool:
    """Whether ``value`` is exactly one Hydra quoted value (an unescaped inner quote ends it early)."""
    if len(value) < 2 or value[0] not in "'\"" or value[-1] != value[0]:
        return False
    quote, inner, backslashes = value[0], value[1:-1], 0
    for char in inner:
        if char == "\\":
            backslashes += 1
            continue
        if char == quote and backslashes % 2 == 0:
            return False
        backslashes = 0
    return backslashes % 2 == 0


def is_multirun(argv: Sequence[str]) -> bool:
    """``-m`` / ``--multirun`` / ``hydra.mode=MULTIRUN`` on the command line."""
    return any(arg in MULTIRUN_FLAGS or arg.replace(" ", "") == "hydra.mode=MULTIRUN" for arg in argv)


def quote_command_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of each ``hardware.cmd`` override Hydra-quoted (see the module docstring)."""
    multirun = is_multirun(argv)
    return [_quote_one(arg, multirun) for arg in argv]


def _quote_one(arg: str, multirun: bool) -> str:
    match = CMD_OVERRIDE.match(arg)
    if match is None:
        return arg
    key, value = match.group("key"), match.group("value")
    if is_quoted(value) or value.strip().lower() == "null":
        return arg
    own_quoting = value.startswith(("'", '"'))
    if (multirun and own_quoting) or ((multirun or own_quoting) and _is_sweep(key, value)):
        # the user's own Hydra quoting of a sweep: Hydra runs it, or says why not (parse_error_message)
        return arg
    return f"{key}={hydra_quote(value)}"


def _is_sweep(key: str, value: str) -> bool:
    """Whether Hydra parses ``key=value`` as a sweep (``a,b``, ``choice(...)``, ``range(...)``)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = OverridesParser.create()
    try:
        return bool(_PARSER.parse_override(f"{key}={value}").is_sweep_override())
    except HydraException:  # not parseable as it stands: one command, quoted below
        return False


def parse_error_message(err: BaseException) -> str | None:
    """One line for Hydra's parse error of a ``hardware.cmd`` override (None for any other error)."""
    if not isinstance(err, OverrideParseException):
        return None
    override = str(getattr(err, "override", "") or "")
    match = CMD_OVERRIDE.match(override)
    if match is None:
        return None
    detail = " ".join(str(getattr(err, "message", "") or err).split()).split(" See https://")[0]
    return (f"{match.group('key').lstrip('+')}: Hydra cannot parse the override {override!r} ({detail}); quote "
            f"the whole command for Hydra, e.g. {QUOTING_EXAMPLE}, or a sweep with -m: "
            f"\"hardware.cmd='python bench.py {{onnx}}','python bench.py --fast {{onnx}}'\"")
