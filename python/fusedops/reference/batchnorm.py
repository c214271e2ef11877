"""batchnorm reference (filled by its issue)."""
__all__ = []
