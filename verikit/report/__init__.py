"""Benchmark reports: figures (matplotlib, Agg), a self-contained HTML page and a JSON document.

Submodules, each with one job:

* :mod:`verikit.report.results` -- reading and writing a run's ``result.json`` + ``scores.npz``
  (schema version and validation);
* :mod:`verikit.report.figures` -- ROC (log FMR), DET (normal-deviate axes), score histograms
  with the threshold, CMC; saved as PNG and SVG;
* :mod:`verikit.report.compare` -- paired subject-bootstrap tests between runs (pair-level when
  subjects are too few or unknown);
* :mod:`verikit.report.text` -- a run's caveats in words (skipped inputs, failures to acquire, fixed
  thresholds), printed next to the rates by the stdout table and the HTML page alike;
* :mod:`verikit.report.html` -- the HTML page (figures embedded as base64 PNG, no external assets);
* :mod:`verikit.report.build` -- :func:`~verikit.report.build.write_report`, which ties them together.

matplotlib is imported only when a figure is drawn (``pip install verikit[report]``).
"""
