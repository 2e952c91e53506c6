"""Speech emotion recognition by transfer from the chain TDNN-F (paper 1, stage 7).

One concept per module:

* :mod:`ser.emotion.folds`   cross-validation folds as Kaldi data dirs (session / speaker protocols);
* :mod:`ser.emotion.graft`   the pretrained body up to a Kaldi-named layer plus a new emotion head;
* :mod:`ser.emotion.frames`  frame-level training chunks and whole-utterance evaluation chunks;
* :mod:`ser.emotion.voting`  the utterance decision from frame posteriors (sum of softmaxes);
* :mod:`ser.emotion.trainer` the training loop (Adam, validation-based model selection, checkpoints);
* :mod:`ser.emotion.tables`  paper 1's Tables 2 and 3 from the systems' results.
"""
