"""What a running server holds: the :class:`verikit.service.Service`, loaded once, and the threads
that use it.

* The gallery's SQLite connection belongs to one thread, so every gallery call (and the Service's
  creation) runs on one dedicated thread, in order. Gallery calls are short (a search, a commit).
* The model runs on the micro-batcher's thread (:mod:`.batching`), one forward at a time.
* The detector/segmenter, when the gallery has a pipeline, runs on a third thread: detectors
  such as OpenCV's cascades are not safe to call from several threads at once.
* Uploads are decoded, and turned into the model's input tensors, on the event loop's worker
  threads, several at once; the forward thread only runs the network on whole batches.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import anyio.to_thread

from ..errors import DataError, ImageError
from .batching import MicroBatcher
from .limits import Limits
from .metrics import Metrics
from .uploads import decode_upload, upload_name


@dataclass(frozen=True)
class ServiceOptions:
    """How to open the service (the arguments of :meth:`verikit.service.Service.open`)."""

    gallery: Any
    model: Any = None
    device: str = "auto"
    threshold: float | None = None
    scorer: str = "similarity"
    pipeline: Any = None
    index: str = "faiss:Flat"


class Runtime:
    def __init__(self, options: ServiceOptions, limits: Limits, metrics: Metrics, *, max_batch: int,
                 max_wait: float) -> None:
        self.options = options
        self.limits = limits
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.service: Any = None
        self.batcher: MicroBatcher | None = None
        self._gallery_thread = ThreadPoolExecutor(1, thread_name_prefix="verikit-gallery")
        self._pipeline_thread = ThreadPoolExecutor(1, thread_name_prefix="verikit-pipeline")
        self.warnings: list[str] = []

    def open(self) -> None:
        """Load the model, calibration and gallery (on the gallery thread); errors raise here, before
        the server listens, so they reach the user as one line."""
        from ..service import Service

        def load() -> Any:
            o = self.options
            service = Service.open(o.gallery, model=o.model, device=o.device, threshold=o.threshold,
                                   scorer=o.scorer, pipeline=o.pipeline, index=o.index)
            try:
                service.calibration  # a bad calibration fails now, not at the first request
                if service.pipeline is not None:
                    service.cropper()  # nor does a detector/segmenter that cannot be built
            except BaseException:
                service.close()
                raise
            return service
        if self.service is None:
            self.service = self._gallery_thread.submit(load).result()
            self.warnings = self.service.threshold_warnings()

    async def start(self) -> None:
        import warnings

        from ..errors import VerikitWarning
        from ..models.inference import embed_prepared

        if self.service is None:
            await asyncio.get_running_loop().run_in_executor(None, self.open)
        # Said once at start-up (and in /readyz), not once per request.
        warnings.filterwarnings("ignore", category=VerikitWarning)
        model = self.service.model
        self.batcher = MicroBatcher(lambda tensors: embed_prepared(model, tensors),
                                    max_batch=self.max_batch, max_wait=self.max_wait,
                                    observe=self.metrics.observe_batch)
        await self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        if self.service is not None:
            await self.in_gallery_thread(self.service.close)
        self._gallery_thread.shutdown(wait=True)
        self._pipeline_thread.shutdown(wait=True)

    async def in_gallery_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._gallery_thread, functools.partial(fn, *args))

    async def in_pipeline_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pipeline_thread, functools.partial(fn, *args))

    # -- requests' images --------------------------------------------------------------------------
    async def decode(self, uploads: Sequence[Any]) -> list[tuple[str, Any]]:
        """``(name, image)`` per upload; any unreadable one fails the whole request (nothing is stored)."""
        if not uploads:
            raise DataError("no images in the request")
        if len(uploads) > self.limits.max_images:
            self.metrics.rejected.labels("images").inc()
            raise TooManyImages(f"{len(uploads)} images in one request; the limit is {self.limits.max_images}")
        out = []
        for i, up in enumerate(uploads):
            name = upload_name(getattr(up, "filename", None), i)
            data = await up.read()
            if not data:
                raise ImageError(f"cannot read image '{name}': file is empty")
            image = await anyio.to_thread.run_sync(decode_upload, data, name, self.limits.max_pixels)
            out.append((name, image))
        return out

    async def faces(self, decoded: list[tuple[str, Any]]) -> list[Any]:
        """The picture to embed per image: the image itself, or its face crop through the gallery's
        pipeline (the largest face; an image without one fails the request)."""
        images = [im for _, im in decoded]
        if self.service.pipeline is None:
            return images

        def crop() -> list[Any]:
            results = self.service.cropper().crops_of_images(images, [n for n, _ in decoded])
            for r in results:
                if isinstance(r, ImageError):
                    raise r
            return [r[0].image for r in results]
        return await self.in_pipeline_thread(crop)

    async def embed(self, decoded: list[tuple[str, Any]]) -> Any:
        from ..models.inference import prepare_images

        faces = await self.faces(decoded)
        # Resizing and normalising happen here, on the request's own worker thread, so the forward
        # thread (the one resource every request waits for) only runs the network.
        tensors = await anyio.to_thread.run_sync(prepare_images, self.service.model, faces)
        return await self.batcher.embed(tensors)


class TooManyImages(DataError):
    """More images in one request than the server's limit (answered with 413)."""
