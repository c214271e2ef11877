"""Launch geometry shared by the CUDA launchers."""
from numba import cuda

_WAVES = 32  # resident blocks per SM a grid-stride launch aims for


def grid_for(n, threads_per_block):
    """Blocks for a grid-stride loop over n items: enough to fill the device, no more than n needs."""
    blocks = (n + threads_per_block - 1) // threads_per_block
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # simulator or no attribute: one block per chunk
        return max(1, blocks)
    return max(1, min(blocks, sms * _WAVES))
