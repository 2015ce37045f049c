"""Detection as its own task: annotation files, detection metrics, running a detector over a
labelled set, and drawing boxes. The detectors themselves are plugins (``verikit.detectors``);
turning detections into crops for embedding lives in :mod:`verikit.pipeline.detection`.
"""
