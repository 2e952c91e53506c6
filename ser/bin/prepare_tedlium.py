"""local/prepare_tedlium.sh [--seconds-per-spk-max 180] <TEDLIUM_release2 | TEDLIUM_release-3 dir> <data root>

Writes <data root>/tedlium_{train,dev,test} (Kaldi data dirs with stm and glm for scoring),
as egs/tedlium/s5_r2/local/prepare_data.sh + modify_speaker_info.sh do.  See ser/prep/tedlium.py.
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.prep.tedlium import prepare_tedlium


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds-per-spk-max", type=float, default=180.0)
    p.add_argument("--sets", default="train,dev,test")
    p.add_argument("corpus")
    p.add_argument("data_root")
    a = p.parse_args(argv)
    setup_logging()
    stats = prepare_tedlium(a.corpus, a.data_root, a.sets.split(","), a.seconds_per_spk_max)
    for name, s in stats.items():
        if s["up_to_date"]:
            print(f"tedlium_{name}: up to date: {s['utterances']} utterances, {s['speakers']} speakers, "
                  f"{s['recordings']} talks")
            continue
        print(f"tedlium_{name}: {s['utterances']} utterances, {s['speakers']} speakers, {s['recordings']} talks; "
              f"skipped: {s['ignore_time_segment_in_scoring']} ignore_time_segment_in_scoring, "
              f"{s['empty_transcript_skipped']} empty transcripts, {s['empty_stm_talks_dropped']} talks with an empty stm")
    return 0


if __name__ == "__main__":
    run_main(main)
