"""Score-level evaluation and calibration for verification and identification.

Submodules (imported on demand, so importing this package stays cheap):

* :mod:`verikit.calibrate.metrics` -- ROC, AUC, EER, DET, TAR at FAR, thresholds at a target
  FMR, CMC / rank-1, open-set identification rates, binomial confidence intervals.
* :mod:`verikit.calibrate.pairs` -- genuine / impostor score sets from embeddings.
* :mod:`verikit.calibrate.summary` -- EER, TAR at FARs, AUC and a thinned ROC from one sort per class.
* :mod:`verikit.calibrate.streaming` -- histogram ROC for score sets larger than memory, with bounds.
* :mod:`verikit.calibrate.bootstrap` -- bootstrap over subjects; paired test between two runs.
* :mod:`verikit.calibrate.normalization` -- Z-, T-, S- and adaptive S-norm against a cohort.
* :mod:`verikit.calibrate.protocols` -- pairs CSV, LFW pairs.txt, folder all-pairs, identification CSVs.
* :mod:`verikit.calibrate.evaluation` -- the verification section of a benchmark result.
* :mod:`verikit.calibrate.embedding_cache` -- embeddings cached per model fingerprint and file.
* :mod:`verikit.calibrate.benchmark` -- a protocol through an embedder (the only part that needs a model).

Conventions used throughout: scores are *similarities* (higher means more alike) and a
comparison is a match when ``score >= threshold``. FMR (a.k.a. FAR) is the fraction of
impostor scores ``>= t``; FNMR is the fraction of genuine scores ``< t``; TMR = TAR = 1 - FNMR.
"""
