"""Recipe configuration: one YAML file per recipe variant (``conf/mini.yaml``, ``conf/paper.yaml``).

``python -m ser.config conf/mini.yaml`` prints the flattened options as shell
assignments (``features_nj=2``), which run.sh ``eval``s, so a stage reads
``$features_nj``; Python code reads the same file with :func:`load`.
Nested keys are joined with ``_``; lists become space-separated strings.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return cfg


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}".replace("-", "_")
        if not key.replace("_", "").isalnum():
            raise ConfigError(f"config key {key!r} is not a valid shell name")
        if isinstance(v, dict):
            out.update(flatten(v, key + "_"))
        elif isinstance(v, (list, tuple)):
            out[key] = " ".join(str(x) for x in v)
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif v is None:
            out[key] = ""
        else:
            out[key] = str(v)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ser.config <conf.yaml>", file=sys.stderr)
        return 1
    try:
        flat = flatten(load(argv[0]))
    except ConfigError as e:
        print(f"ser.config: {e}", file=sys.stderr)
        return 1
    for k, v in flat.items():
        print(f"{k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
