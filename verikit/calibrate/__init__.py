"""Score-level evaluation and calibration for verification and identification.

Submodules (imported on demand, so importing this package stays cheap):

* :mod:`verikit.calibrate.metrics` -- ROC, AUC, EER, DET, TAR at FAR, thresholds at a target
  FMR, CMC / rank-1, open-set identification rates, binomial confidence intervals.
* :mod:`verikit.calibrate.pairs` -- genuine / impostor score sets from embeddings.

Conventions used throughout: scores are *similarities* (higher means more alike) and a
comparison is a match when ``score >= threshold``. FMR (a.k.a. FAR) is the fraction of
impostor scores ``>= t``; FNMR is the fraction of genuine scores ``< t``; TMR = TAR = 1 - FNMR.
"""
