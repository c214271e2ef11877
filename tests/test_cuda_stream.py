"""fusedops.kernels.cuda.launch.using_stream: every CUDA launcher sends its kernels to the stream
in effect (what fusedops.torch uses to run on PyTorch's current stream), with the same results
as on the default stream; host arrays are staged through that stream and synchronized."""
import numpy as np
import pytest

from fusedops import backends, ops

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    backends.backend_unavailable_reason("cuda") is not None,
    reason=f"cuda unavailable: {backends.backend_unavailable_reason('cuda')}")]


@pytest.fixture
def launch():
    from fusedops.kernels.cuda import launch

    return launch


def _record_launches(monkeypatch, launch):
    """Wrap current_stream in every launcher module to record the streams handed to kernels."""
    seen = []
    from fusedops.kernels.cuda import batchnorm, batchnorm_sync, dropout, optim

    def spy():
        s = launch.current_stream()
        seen.append(s)
        return s

    for mod in (optim, dropout, batchnorm, batchnorm_sync):
        monkeypatch.setattr(mod, "current_stream", spy)
    return seen


def test_default_is_stream_zero_and_context_restores(launch):
    from numba import cuda

    assert launch.current_stream() == 0
    s = cuda.stream()
    with launch.using_stream(s):
        assert launch.current_stream() is s
        with launch.using_stream(0):
            assert launch.current_stream() == 0
        assert launch.current_stream() is s
    assert launch.current_stream() == 0
    assert launch.stream_key(0) == 0 and launch.stream_key(s) == launch.stream_key(s)


def test_kernels_launch_on_the_stream_in_effect(monkeypatch, launch):
    from numba import cuda

    seen = _record_launches(monkeypatch, launch)
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(300), rng.standard_normal(300)
    m, v = np.zeros(300), np.zeros(300)
    x = rng.standard_normal((40, 3))
    w_ref, m_ref, v_ref = w.copy(), m.copy(), v.copy()
    ops.adam_step(w_ref, g, m_ref, v_ref, step=1, lr=0.1, backend="cuda")
    y_ref, mask_ref = ops.dropout_forward(x, 0.3, seed=5, offset=2, backend="cuda")
    bn_ref = ops.batchnorm_forward(x, None, None, None, None, training=True, backend="cuda")
    seen.clear()
    s = cuda.stream()
    with launch.using_stream(s):
        ops.adam_step(w, g, m, v, step=1, lr=0.1, backend="cuda")  # host arrays: staged on s
        y, mask = ops.dropout_forward(x, 0.3, seed=5, offset=2, backend="cuda")
        bn = ops.batchnorm_forward(x, None, None, None, None, training=True, backend="cuda")
    assert seen and all(t is s for t in seen)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(mask, mask_ref)
    for a, b in zip(bn, bn_ref):
        np.testing.assert_array_equal(a, b)


def _synced_bn(x, dy):
    """The synchronized-BN ops of one part that is the whole batch (L > 1: per-column expands)."""
    mean, m2 = ops.batchnorm_stats(x, backend="cuda")
    whole = (mean, m2, x.shape[0] * x.shape[2])
    y, bmean, invstd = ops.batchnorm_forward(x, None, None, None, None, training=True,
                                             batch_stats=whole, backend="cuda")
    s, d = ops.batchnorm_grad_sums(dy, x, bmean, backend="cuda")
    dx = ops.batchnorm_backward(dy, x, None, bmean, invstd, grad_sums=(s, d, whole[2]),
                                backend="cuda")
    return (mean, m2, y, bmean, invstd, s, d, *dx)


def _record_configs(monkeypatch):
    """The launch configuration of every kernel launch (kernel[grid, block, stream]), on the
    simulator's kernels or the GPU's dispatchers alike: a launch that leaves out the stream
    shows here, not only one that asks current_stream() and gets another."""
    from fusedops.kernels.cuda import batchnorm

    cls, configs = type(batchnorm._normalize_kernel), []
    real = cls.__getitem__

    def getitem(self, config):
        configs.append(config)
        return real(self, config)

    monkeypatch.setattr(cls, "__getitem__", getitem)
    return configs


def test_synced_batchnorm_launches_on_the_stream_in_effect(monkeypatch, launch):
    from numba import cuda

    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 3))
    ref = _synced_bn(x, dy)
    configs = _record_configs(monkeypatch)
    s = cuda.stream()
    with launch.using_stream(s):
        got = _synced_bn(x, dy)
    assert len(configs) == 15  # stats 2, forward 5 (3 column expands), sums 2, backward 6 (4)
    assert all(len(c) >= 3 and c[2] is s for c in configs), configs
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
