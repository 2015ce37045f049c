"""The ``verikit`` command line: one module per command group, thin commands, one error boundary."""
