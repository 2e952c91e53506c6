"""CTC character recognition (paper 2's DeepSpeech-style pretraining): the 28-character alphabet and
transcript normalisation (``ser.ctc.text``), greedy decoding and character / word error rates
(``ser.ctc.decode``)."""
