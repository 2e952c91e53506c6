"""UTF-8 text inputs (stm, EmoEvaluation, dictionaries, Kaldi text): errors name the file and line."""

from __future__ import annotations

import os
import re
from pathlib import Path

_NEWLINE = re.compile(r"\r\n|\r|\n")  # universal newlines, as open() in text mode


def read_lines(path: str | os.PathLike, error: type[Exception] = ValueError) -> list[str]:
    """Lines of a UTF-8 file without their newlines; undecodable bytes raise ``error("<path>:<line>: ...")``."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r})") from e
    lines = _NEWLINE.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines
