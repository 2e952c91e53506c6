"""Reader for Kaldi option ("config") files such as ``conf/mfcc_hires.conf``.

Mirrors ``ParseOptions::ReadConfigFile``, ``ParseOptions::NormalizeArgName``,
``ParseOptions::SplitLongArg`` and ``ParseOptions::ToBool`` in ``src/util/parse-options.cc``:

* everything from the first ``#`` on a line is a comment; lines are then stripped and blank lines skipped;
* every remaining line must look like ``--name=value`` (a bare ``--name`` is allowed for booleans and
  means ``true``);
* option names are normalised the Kaldi way: lower case, ``_`` becomes ``-``;
* a later line overrides an earlier one;
* booleans accept ``true``/``t``/``1``/(empty) and ``false``/``f``/``0`` (case-insensitive).

Deviation: Kaldi registers the accepted options per program; here the caller passes them as
``allowed`` (name → Python type). An option not in ``allowed`` is a ``ValueError`` naming the file
and the option, as Kaldi's "Invalid option" error does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Union

OptionValue = Union[str, bool, int, float]

__all__ = ["OptionValue", "normalize_option_name", "parse_kaldi_value", "read_kaldi_conf"]


def normalize_option_name(name: str) -> str:
    """Kaldi's NormalizeArgName: lower case, underscores become dashes (``use_energy`` → ``use-energy``)."""
    return name.replace("_", "-").lower()


def parse_kaldi_value(value: str, kind: type, *, option: str, source: str) -> OptionValue:
    """Convert the text of one option value to ``kind`` (bool, int, float or str) the way Kaldi does."""
    if kind is bool:
        low = value.lower()
        if low in ("true", "t", "1", ""):
            return True
        if low in ("false", "f", "0"):
            return False
        raise ValueError(f"{source}: invalid boolean value {value!r} for option --{option} (expected true or false)")
    if kind is int:
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{source}: invalid integer value {value!r} for option --{option}") from None
    if kind is float:
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{source}: invalid real value {value!r} for option --{option}") from None
    if kind is str:
        return value
    raise TypeError(f"unsupported option type {kind!r} for --{option}")


def read_kaldi_conf(
    path: Union[str, Path], allowed: Mapping[str, type] | None = None
) -> dict[str, OptionValue]:
    """Read a Kaldi option file and return ``{kaldi-option-name: value}``.

    Args:
        path: the option file (one ``--name=value`` per line, ``#`` comments, blank lines).
        allowed: Kaldi option name → type (bool/int/float/str). When given, unknown options raise
            ``ValueError`` naming the file and the option, and values are converted to that type.
            When ``None``, every option is accepted and values stay strings (a bare ``--x`` gives ``""``).

    Raises:
        ValueError: unreadable line, unknown option, missing ``=value`` for a non-boolean, bad value.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    source = str(path)
    allowed_norm = None if allowed is None else {normalize_option_name(k): t for k, t in allowed.items()}
    result: dict[str, OptionValue] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{lineno}"
            if not line.startswith("--") or len(line) == 2:
                raise ValueError(f"{where}: line {raw.strip()!r} is not of the form --name=value")
            body = line[2:]
            if "=" in body:
                name, value = body.split("=", 1)
                has_value = True
            else:
                name, value, has_value = body, "", False
            name = normalize_option_name(name.strip())
            if not name:
                raise ValueError(f"{where}: empty option name in {raw.strip()!r}")
            if allowed_norm is None:
                result[name] = value
                continue
            if name not in allowed_norm:
                raise ValueError(f"{source}: unknown option --{name} (line {lineno})")
            kind = allowed_norm[name]
            if not has_value and kind is not bool:
                raise ValueError(f"{where}: option --{name} needs a value (format is --{name}=value)")
            result[name] = parse_kaldi_value(value, kind, option=name, source=where)
    return result
