"""The application layer the CLI, the Python API and the HTTP server all call.

* :class:`Service` (:mod:`.app`): model + calibration + gallery loaded once and checked to belong
  together; enroll, verify, search, curation; a long-lived service follows other processes' changes.
* :mod:`.api`: ``verikit.enroll`` / ``verikit.verify`` / ``verikit.search`` with the same checks.
* :mod:`.checks`, :mod:`.loading`, :mod:`.pipelines`: the individual decisions (fingerprints,
  thresholds, scorers, pipeline merging); :mod:`.hooks` supports the above.

Warnings are Python warnings of category :class:`verikit.VerikitWarning`; errors are
:class:`verikit.VerikitError` subclasses with one-line messages.
"""

from __future__ import annotations

from .app import EnrollResult, Service
from .pipelines import PipelineRequest

__all__ = ["EnrollResult", "PipelineRequest", "Service"]
