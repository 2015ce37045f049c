"""Calibration: turning scores into decisions at an operating point the user chose.

* :mod:`verikit.calibrate.threshold` -- ``calibration.json``: the threshold at a target
  false-match rate, with the rates measured there, bound to one model.
* :mod:`verikit.calibrate.normalization` -- Z-, T-, S- and adaptive S-norm against a cohort.
* :mod:`verikit.calibrate.cohort` -- the cohort a normalised calibration was made with (``cohort.npz``).

Measuring how good a model is (ROC, EER, intervals, protocols, the benchmark runner) lives in
:mod:`verikit.evaluate`; this package only builds on its metrics.

Conventions used throughout: scores are *similarities* (higher means more alike) and a
comparison is a match when ``score >= threshold``. FMR (a.k.a. FAR) is the fraction of
impostor scores ``>= t``; FNMR is the fraction of genuine scores ``< t``; TMR = TAR = 1 - FNMR.
"""
