"""Inference with an exported emotion model: the model dir, recordings, decisions, timelines.

* :mod:`ser.infer.export`      a trained system as a self-contained model dir (``model.json``);
* :mod:`ser.infer.audio`       what the inputs name, and their audio as 16 kHz mono blocks;
* :mod:`ser.infer.recognizer`  :class:`EmotionRecognizer`: MFCC, online i-vectors, network, voting, streamed;
* :mod:`ser.infer.timeline`    sliding-window posteriors, segments, their PNG and CSV.
* :mod:`ser.infer.vad`         speech detection (Silero VAD's network from the silero-vad wheel).
"""
