"""Training: chain egs (chunks, whole utterances), alignment, the LF-MMI trainer."""
