"""Reference models: thin consumers of loader batches that prove the data is usable.
They take batches as they come and hold no data logic.

``_s3d``: S3D for RGB clips and, with ``S3D.for_codes``, for neural-code latents.
"""

from cvload.models._s3d import S3D, S3DConfig

__all__ = ["S3D", "S3DConfig"]
