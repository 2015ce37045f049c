"""Evaluation: how good a model (or a detector) is, measured on labelled data.

Submodules (imported on demand, so importing this package stays cheap):

* :mod:`verikit.evaluate.metrics` -- ROC, AUC, EER, DET, TAR at FAR, thresholds at a target
  FMR, CMC / rank-1, open-set identification rates, binomial confidence intervals.
* :mod:`verikit.evaluate.pairs` -- genuine / impostor score sets from embeddings.
* :mod:`verikit.evaluate.summary` -- EER, TAR at FARs, AUC and a thinned ROC from one sort per class.
* :mod:`verikit.evaluate.streaming` -- histogram ROC for score sets larger than memory, with bounds.
* :mod:`verikit.evaluate.bootstrap` -- bootstrap over subjects; paired test between two runs.
* :mod:`verikit.evaluate.protocols` -- pairs CSV, LFW pairs.txt, folder all-pairs, identification CSVs.
* :mod:`verikit.evaluate.evaluation` -- the verification section of a benchmark result (which
  intervals the data supports; rates at fixed thresholds).
* :mod:`verikit.evaluate.identification` -- the identification section (failures to acquire as misses).
* :mod:`verikit.evaluate.embedding_cache` -- embeddings cached per model fingerprint and file, written
  in atomic parts so an interrupted run resumes.
* :mod:`verikit.evaluate.benchmark` -- a protocol through a file embedder that the caller supplies
  (so evaluation never imports the pipeline that builds it).
* :mod:`verikit.evaluate.oneshot` -- N-way one-shot runs (Lake's Omniglot layout).
* :mod:`verikit.evaluate.detection` -- detector evaluation: annotation files, precision/recall/AP.

Conventions: scores are *similarities* (higher means more alike) and a comparison is a match
when ``score >= threshold``. FMR (a.k.a. FAR) is the fraction of impostor scores ``>= t``; FNMR
is the fraction of genuine scores ``< t``; TMR = TAR = 1 - FNMR. Thresholds and score
normalisation are :mod:`verikit.calibrate`'s job.
"""
