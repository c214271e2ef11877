"""NumPy reference of every kernel: the specification the other backends are tested against.

One module per op family (the same file names as kernels/cpu, kernels/cuda and csrc). Each
function has the kernel contract's signature: outputs, inputs, hyperparameters; it writes its
outputs in place and returns nothing. Short and obviously right beats fast here.
"""
from .stream import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .philox import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .lowbit import *  # noqa: F401,F403
from .batchnorm_sync import *  # noqa: F401,F403
