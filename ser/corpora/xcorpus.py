"""A second embedded emotion corpus in the IEMOCAP layout, for cross-corpus evaluation (stage 0).

Cross-corpus evaluation (train on one corpus, test on another, as EmoBox's and SpeechBrain's
cross-corpus set-ups do) asks whether a system learnt emotion or the training corpus's speakers,
sentences and recording set-up.  ``IEMOCAP_B`` is made by the IEMOCAP generator
(:func:`ser.corpora.iemocap.make_iemocap`) with another :class:`~ser.corpora.iemocap.Cast`:

- **other speakers**: two sessions, one F and one M speaker each, whose espeak-ng base voices are variants
  used by neither the IEMOCAP stand-in (``IEMOCAP_VOICES``) nor the TED-LIUM talks (``TALK_VOICE_POOL``),
  with vocal-tract scales between the stand-in's grid points (0.88 / 0.94 / 1.00 / 1.06 / 1.12);
- **other sentences**: every turn reads one of 48 fixed everyday sentences, as acted corpora such as
  CREMA-D (12 sentences) or EmoDB (10) have every actor read the same sentences in every emotion; each
  holds a word the sentence grammar of the stand-in and TED-LIUM can never emit, so no turn of B says
  what a turn of A says;
- **other recordings**: every random stream (room noise and SNR, microphones, prosodic baselines,
  dialogs, annotators) starts from ``(seed, 2)`` instead of the seed.

What it shares with the stand-in on purpose: the emotion classes, each expressed by the same prosodic
shift (``EMOTION_PROSODY``) with the same jitter, the annotation model and the real on-disk layout, so
``local/prepare_iemocap.sh --sessions "1 2"`` prepares it unchanged.  Same seed and size, same bytes.
"""

from __future__ import annotations

from pathlib import Path

from ser.corpora.iemocap import Cast, IemocapConfig, make_iemocap

__all__ = ["NAME", "XCORPUS_CAST", "XCORPUS_SENTENCES", "make_xcorpus"]

NAME = "IEMOCAP_B"

# Everyday sentences, lowercase spoken-form tokens (text.SentenceGenerator's convention); every word is in
# CMUdict and every sentence holds a word outside text.vocabulary() (tests/test_corpora.py checks both).
XCORPUS_SENTENCES = (
    "the kettle is on the stove", "don't forget your umbrella", "the parcel arrived this afternoon",
    "i left the keys in the drawer", "we'll take the ferry on sunday", "the bakery closes at six",
    "my neighbor painted the fence", "she bought a new toaster", "the elevator is out of order",
    "he parked the truck outside", "the blanket is in the closet", "let's meet by the fountain",
    "the soup needs more pepper", "they moved the sofa upstairs", "the lamp in the hallway flickers",
    "i found a coin under the carpet", "the printer ran out of ink", "we watched the parade downtown",
    "the puppy chewed my slipper", "the train to boston leaves at noon", "put the groceries in the fridge",
    "the tickets are in my wallet", "the rabbit hopped across the lawn", "he repaired the bicycle himself",
    "the cookies are still in the oven", "she wrapped the present in ribbon", "the candle burned all evening",
    "i ordered a pizza for dinner", "the laundry is still damp", "our flight was delayed twice",
    "the ladder is leaning on the shed", "the museum opens on tuesday", "bring a sweater tonight",
    "the faucet in the bathroom drips", "the cat sleeps on the porch", "we planted tulips in the yard",
    "the pencil is on the desk", "my cousin lives near the harbor", "the muffins smell wonderful",
    "the ice cream melted in the sun", "he lost his sunglasses at the beach", "the bus stop is around the corner",
    "i spilled coffee on my jacket", "the thermostat is set too low", "the garage door is stuck",
    "we need more napkins", "the orchestra played until midnight", "the mailman came early today",
)

# Base voices (session 1, session 2): installed variants outside the TED-LIUM pool's variant lists and
# without a "breath" line (whose first synthesis in a process is not reproducible).
XCORPUS_CAST = Cast(
    name=NAME,
    sessions=2,
    voices={"F": ("en-us+steph3", "en-gb-x-gbcwmd+shelby"), "M": ("en-gb-x-rp+Mike", "en-us-nyc+Gene2")},
    formant_scales={"F": (1.03, 0.91), "M": (0.97, 1.09)},
    variant_prefix="ser_b_",
    sentences=XCORPUS_SENTENCES,
    stream=2,
)


def make_xcorpus(out: str | Path, seed: int = 0, turns: int = 100, turns_per_dialog: int = 10,
                 nj: int = 2) -> dict:
    """Create ``<out>/IEMOCAP_B`` (``turns`` labelled turns in two sessions); see :func:`make_iemocap`."""
    return make_iemocap(out, IemocapConfig(seed=seed, turns=turns, turns_per_dialog=turns_per_dialog), nj,
                        XCORPUS_CAST)
