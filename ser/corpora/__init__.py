"""Embedded synthetic corpora (stage 0): TED-LIUM r2 and IEMOCAP in their real on-disk layouts, made
deterministically with espeak-ng (``espeakng-loader`` wheel through ctypes).

- :mod:`ser.corpora.espeak`  -- ctypes wrapper, 16 kHz synthesis, fresh-process job runner, noise helpers
- :mod:`ser.corpora.text`    -- seeded English sentence grammar over CMUdict words
- :mod:`ser.corpora.tedlium` -- ``TEDLIUM_release2/{train,dev,test}/{sph,stm}`` + ``TEDLIUM.152k.dic``
- :mod:`ser.corpora.iemocap` -- ``IEMOCAP_full_release/Session{1..5}/...`` with prosody-carried emotion
"""
