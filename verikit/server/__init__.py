"""``verikit serve``: a thin HTTP shell (FastAPI + uvicorn) over :mod:`verikit.service`.

:mod:`.app` (routes, auth, error bodies), :mod:`.runtime` (the service loaded once, its threads),
:mod:`.batching` (micro-batching of forward passes), :mod:`.keys` (API keys as salted hashes),
:mod:`.limits` (request size, images, pixels, concurrency), :mod:`.uploads` (bytes to images
through :mod:`verikit.io`), :mod:`.metrics` (Prometheus), :mod:`.run` (listening, start-up, shutdown).
Needs the ``serve`` extra; nothing here is imported by ``import verikit``.
"""
