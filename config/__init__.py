"""Service settings (environment variables with the ``IMGSEARCH_`` prefix)."""

from config.settings import MODEL_NAMES, Settings

__all__ = ["MODEL_NAMES", "Settings"]
