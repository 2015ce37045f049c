"""Detector evaluation: annotation files (dlib XML, Pascal VOC, CSV), precision / recall / AP at
an IoU threshold, and running a detector over a labelled set. The detectors themselves are
plugins (``verikit.detectors``); turning detections into crops for embedding lives in
:mod:`verikit.pipeline.detection`; drawing boxes in :mod:`verikit.report.draw`.
"""
