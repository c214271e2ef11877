"""batchnorm ops (filled by its issue)."""
__all__ = []
