#!/usr/bin/env bash
# Stage 7, last step (issue 14): the cross-corpus test of an exported system ("trained on A, tested on B").
#
#   local/ser/score_xcorpus.sh [--config conf/mini.yaml] <system>
#
# exp/ser/<system>/export, trained on every session of $ser_set of $corpora_iemocap (A), classifies every
# utterance of the same set of $corpora_xcorpus (B, prepared by stage 1 into data/xcorpus/ with the unchanged
# local/prepare_iemocap.sh) through ser-infer, which computes MFCC and per-recording online i-vectors from
# the audio as for any recording (the exported system's i-vector mode); steps/ser/score_xcorpus.sh scores
# it with stage 7's scorer into exp/ser/<system>_xcorpus/ (one fold named after B: results.{json,md},
# confusion.png) and regenerates exp/results.md, whose row reads "trained on A, tested on B".
# Nothing to do when corpora.xcorpus is ""; skipped when the results were made from the same export,
# test set and names and are newer than them.
#
# conf/mini.yaml (IEMOCAP_B: 100 turns, 4 speakers, 55 of them in iemocap_4cls_exc): 4 CPU seconds (ser-infer
# 55 recordings, 119 s of audio, in 3 s); UA 53.8 [45.0, 62.5] (WA 49.1) against the cross-validated 42.2 ± 3.9
# (pooled 40.2); the fresh clone before (float rounding of stages 4 and 6 only) gave 46.6 against 43.3 ± 5.7.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh
[ $# -eq 1 ] || { echo "usage: $0 [--config conf/X.yaml] <system>" >&2; exit 1; }
sys=$1
[ -n "$corpora_xcorpus" ] || { echo "corpora.xcorpus is empty: no cross-corpus test"; exit 0; }

export_dir=$exp_dir/ser/$sys/export
data=$data_dir/xcorpus/$ser_set
train=$(basename "$corpora_iemocap")
test=$(basename "$corpora_xcorpus")
dir=$exp_dir/ser/${sys}_xcorpus
for f in $export_dir/model.json $data/utt2emo $data/wav.scp; do
  [ -f $f ] || { echo "$0: expected $f to exist (stage 1 prepares $corpora_xcorpus; stage 7 exports)" >&2; exit 1; }
done
mkdir -p $dir/log
echo "train=$train test=$test export=$export_dir data=$data train_data=$data_dir/$ser_set" > $dir/log/options.new
if [ -f $dir/results.json ] && cmp -s $dir/log/options.new $dir/log/options \
   && [ -z "$(find $export_dir/model.json $data/utt2emo $data/wav.scp -newer $dir/results.json)" ]; then
  echo "$dir: up to date"
  exit 0
fi
# --vad false: B's utterances are segmented turns, decoded as stage 7 decodes A's (every frame, no speech detection)
$train_cmd $dir/log/infer.log steps/ser/infer.sh --allow-pipes true --vad false --model $export_dir --format kaldi \
  --output $dir/$test/infer --device "$device" --num-threads 1 $data
$train_cmd $dir/log/score.log steps/ser/score_xcorpus.sh --train-corpus "$train" --test-corpus "$test" \
  --train-data "$data_dir/$ser_set" $export_dir $dir/$test/infer $data $dir
mv $dir/log/options.new $dir/log/options
grep "^${sys}_xcorpus: " $dir/log/score.log   # the overlap found with the training set, then the scores
