"""Embedded synthetic corpora (stage 0): TED-LIUM r2 and IEMOCAP in their real on-disk layouts, made
deterministically with espeak-ng (``espeakng-loader`` wheel through ctypes).

- :mod:`ser.corpora.espeak`  -- ctypes wrapper, 16 kHz synthesis, fresh-process job runner, noise helpers
- :mod:`ser.corpora.text`    -- seeded English sentence grammar over CMUdict words
- :mod:`ser.corpora.tedlium` -- ``TEDLIUM_release2/{train,dev,test}/{sph,stm}`` + ``TEDLIUM.152k.dic``
- :mod:`ser.corpora.iemocap` -- ``IEMOCAP_full_release/Session{1..5}/...`` with prosody-carried emotion
"""

import json
from pathlib import Path
from typing import Callable

MARKER = ".ser_synthetic.json"


def build_once(final: Path, conf: dict, build: Callable[[Path], dict]) -> dict:
    """Make corpus folder ``final`` with ``build(tmp) -> summary`` inside ``<final>.tmp``, renamed when done.

    A complete corpus carries a marker with the config it was made with: the same config is
    reused (returns its summary with ``skipped: True``); another config is an error.
    """
    from ser.io.atomic import atomic_dir, atomic_write_text

    marker = final / MARKER
    if final.exists():
        if marker.exists() and json.loads(marker.read_text())["config"] == conf:
            return json.loads(marker.read_text())["summary"] | {"skipped": True}
        raise RuntimeError(f"{final} exists but was not made with this config; remove it to regenerate")
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final) as tmp:
        summary = build(tmp)
        atomic_write_text(tmp / MARKER, json.dumps({"config": conf, "summary": summary}, indent=1, sort_keys=True))
    return summary | {"skipped": False}
