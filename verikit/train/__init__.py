"""Training embedders with metric-learning losses (pytorch-metric-learning) in verikit's own loop."""
