"""Closed-set identification on embeddings: an SVM (or linear SVM) over a model's embeddings,
measured against nearest neighbour on the same split.

* :mod:`verikit.classify.svm`: fitting, pickle-free storage and numpy prediction of the SVM.
* :mod:`verikit.classify.protocol`: the per-identity train/test split, the 1-NN baseline, and
  fitting from a folder-per-identity dataset.
"""
