"""What the app holds: the settings, the worker pool, the metrics, and the drain state.

Everything here is read and changed on the event loop's thread only (the workers touch only their own
estimator), so plain counters suffice.
"""

from __future__ import annotations

import hmac
import pathlib
from dataclasses import dataclass, field

from lwop_jax import __version__
from lwop_jax.inference.estimator import PoseEstimator
from lwop_jax.serve.detect import Detection, detect_bytes, image_record
from lwop_jax.serve.limits import Limits, RequestError, check_network_size
from lwop_jax.serve.metrics import ServiceMetrics
from lwop_jax.serve.pool import InferencePool, PoolFull

RETRY_AFTER_SECONDS = '1'  # a queue of a few inferences of ~20-100 ms each has room again by then


@dataclass(frozen=True)
class Settings:
    checkpoint_path: str
    workers: int = 1
    threads: int | None = None  # per worker
    max_queue: int = 8
    max_connections: int = 64  # requests and streams handled at once, each holding up to one body
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    net_height: int = 256
    backend: str | None = None
    precision: str | None = None
    keypoint_schema: str | None = None
    num_refinement_stages: int | None = None
    drain_timeout: float = 30.0  # seconds SIGTERM waits for requests in flight

    def make_estimator(self) -> PoseEstimator:
        return PoseEstimator(
            self.checkpoint_path,
            self.backend,
            net_height=self.net_height,
            threads=self.threads,
            num_refinement_stages=self.num_refinement_stages,
            precision=self.precision,
            keypoint_schema=self.keypoint_schema,
        )


class Service:
    def __init__(self, settings: Settings, estimators: list[PoseEstimator]):
        self.settings = settings
        self.estimator = estimators[0]  # read on the loop's thread for schema, backend, precision only
        self.pool = InferencePool(estimators, settings.max_queue)
        self.metrics = ServiceMetrics(self.pool)
        self.model_name = pathlib.Path(settings.checkpoint_path).name  # no server paths in answers
        self.draining = False
        self.active = 0  # requests and streams being handled
        self.in_flight = 0  # requests and stream frames not yet answered: a drain waits for these

    @classmethod
    def load(cls, settings: Settings) -> Service:
        """Loads one estimator per worker (each its own runtime session)."""
        return cls(settings, [settings.make_estimator() for _ in range(max(1, settings.workers))])

    # -- access -------------------------------------------------------------------------------

    @property
    def needs_key(self) -> bool:
        return bool(self.settings.api_key)

    def key_matches(self, offered: str | None) -> bool:
        """Constant-time comparison (hmac.compare_digest): the answer's timing tells nothing of the key."""
        expected = (self.settings.api_key or '').encode()
        return offered is not None and hmac.compare_digest(offered.encode('utf-8', 'replace'), expected)

    # -- the work -----------------------------------------------------------------------------

    async def detect(self, data: bytes, net_height: int) -> Detection:
        """People in an image's bytes, on a worker, for POST /v1/poses and each stream frame alike. First the
        checks that run before decoding: RequestError 400 or 413 from the header (:meth:`Limits.check_image`)
        and from the network input it would make at ``net_height`` (:func:`check_network_size`); then 503
        (with Retry-After) when the workers and the queue are full, 400 when the image cannot be decoded."""
        check_network_size(self.settings.limits.check_image(data), net_height)
        try:
            detection = await self.pool.run(detect_bytes, data, net_height)
        except PoolFull as exc:
            raise RequestError(503, f'busy: {exc}; retry later', {'Retry-After': RETRY_AFTER_SECONDS}) from exc
        self.metrics.people.observe(len(detection.result))
        return detection

    def record(self, detection: Detection, net_height: int, result=None) -> dict:
        return image_record(self.estimator, self.model_name, net_height, detection, result)

    def model_info(self) -> dict:
        """GET /v1/model: the model, how it runs, and what a client needs to draw its skeleton."""
        schema = self.estimator.schema
        return {
            'lwop_jax_version': __version__,
            'model': self.model_name,
            'backend': self.estimator.backend_name,
            'precision': self.estimator.precision,
            'height_size': self.settings.net_height,
            'keypoint_schema': schema.name,
            'keypoint_names': list(schema.keypoints),
            'limbs': [list(limb) for limb in schema.drawn_limbs],
            'colors': ['#{2:02x}{1:02x}{0:02x}'.format(*bgr) for bgr in schema.colors],  # BGR -> CSS
            'workers': self.pool.workers,
            'max_queue': self.pool.capacity - self.pool.workers,
            'max_body_bytes': self.settings.limits.max_body_bytes,
            'max_pixels': self.settings.limits.max_pixels,
            'api_key_required': self.needs_key,
        }

    def close(self) -> None:
        self.pool.close()
