"""ZeRO stage 1 (Rajbhandari et al., SC'20): each rank keeps the optimizer state of one
contiguous shard of every flat parameter buffer and steps only that shard.

Per step and flat buffer: Reduce_scatter of the gradient (each rank receives the sum of its
shard), the wrapped optimizer's fused kernel on the shard (an inner optimizer of the same class
whose parameters are views of the shard, so the step writes the parameter buffer in place),
then an in-place Allgatherv of the parameters. The inner optimizer has one group per (buffer,
outer group) piece, so each piece is one kernel call; its hyperparameters are copied from the
outer optimizer's groups before every step (lr schedules and fit's updates reach it).

The state moves as a single-process checkpoint: `state_dict` gathers the pieces on the root in
the format of fusedops.optim, `load_state_dict` scatters such a checkpoint from the root. One
step count per group: the shards of a group always step together.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import _optim_state, optim
from .._arrays import copy_into, full, host_copy
from ..checks import check_like
from ._comm import MPI, Staged, all_finite
from ._layout import Segment, runs

__all__ = ["ZeroShards"]


def _clone(opt, groups):
    """An optimizer of opt's class and options over `groups` (no state)."""
    inner = copy.copy(opt)  # keeps subclass options outside the groups (Adagrad's initial value)
    optim._Optimizer.__init__(inner, groups, opt.defaults, backend=opt._backend)
    return inner


class ZeroShards:
    """The sharded state of optimizer `opt` on communicator `comm` (see the module docstring)."""

    def __init__(self, opt, comm):
        self.opt, self.comm = opt, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        params = opt._param_arrays()
        self.sizes = [int(np.prod(np.shape(p))) for p in params]
        self.group_of = [g for g, grp in enumerate(opt.param_groups) for _ in grp["params"]]
        self.segments = [Segment(i, j, flat, self.sizes, self.group_of, self.size)
                         for i, j, flat in runs(params)]
        self.steps = [0] * len(opt.param_groups)
        self.present = [set() for _ in opt.param_groups]  # state buffers each group has
        self.pieces, inner_groups, self.gshards, self.inner_grads = [], [], [], []
        for seg in self.segments:
            a, b = seg.shard(self.rank)
            device = not isinstance(seg.flat, np.ndarray)
            gshard = full(b - a, seg.dtype, device)
            self.gshards.append(gshard)
            for e, (g, lo, hi) in enumerate(seg.pieces(self.rank)):
                if hi > lo:
                    self.pieces.append((seg, e, g))
                    inner_groups.append({**self._hyper(g), "params": [seg.flat[lo:hi]]})
                    self.inner_grads.append(gshard[lo - a:hi - a])
        self.inner = _clone(opt, inner_groups) if inner_groups else None
        self._key = None

    def _hyper(self, g):
        return {k: v for k, v in self.opt.param_groups[g].items() if k != "params"}

    # ------------------------------------------------------------------ a step
    def check(self, grads):
        """Local validation of a step (before any collective): the gradients, laid out as the
        parameters, and the hyperparameters (copied into the inner optimizer)."""
        params = self.opt._param_arrays()
        key = (tuple(map(id, params)), tuple(map(id, grads)))
        if key != self._key:
            for k, (p, g) in enumerate(zip(params, grads)):
                if g is None:
                    raise ValueError(f"grads[{k}] is None: shard_state=True steps every parameter")
                check_like(f"grads[{k}]", g, f"params[{k}]", p)
            flats = []
            for seg in self.segments:
                gr = runs(grads[seg.first:seg.end], "grads")
                if len(gr) != 1:
                    raise ValueError(f"grads[{seg.first}:{seg.end}] must lie end to end in one "
                                     f"buffer, as their parameters do (shard_state=True)")
                flats.append(gr[0][2])
            self._gflats, self._key = flats, key
        if self.inner is not None:
            for ig, (_, _, g) in zip(self.inner.param_groups, self.pieces):
                ig.update(self._hyper(g))
            self.inner._current_plan(self.inner._param_arrays(), self.inner_grads)

    def reduce_scatter(self, mean: bool) -> None:
        for seg, gflat, gshard in zip(self.segments, self._gflats, self.gshards):
            send, recv = Staged(gflat), Staged(gshard, read=False)
            self.comm.Reduce_scatter(send.buf, recv.buf, [int(c) for c in seg.counts], op=MPI.SUM)
            if mean:
                recv.buf /= self.size
            recv.finish()

    def nonfinite(self) -> bool:
        """This rank's reduced shard holds a NaN or Inf."""
        return not all(all_finite(g) for g in self.gshards)

    def step_and_gather(self) -> None:
        if self.inner is not None:
            self.inner.step(self.inner_grads)
        for seg in self.segments:
            self.allgather_params(seg)
        for g in range(len(self.steps)):
            self.steps[g] += 1
            self.present[g] |= set(self.opt._active(self.opt.param_groups[g]))

    def allgather_params(self, seg) -> None:
        buf = Staged(seg.flat)
        self.comm.Allgatherv(MPI.IN_PLACE, [buf.buf, (seg.counts, seg.displs)])
        buf.finish()

    def nbytes(self) -> int:
        if self.inner is None:
            return 0
        return sum(int(np.prod(np.shape(v))) * np.dtype(v.dtype).itemsize
                   for grp in self.inner._groups for _, views in grp.buffers.values() for v in views)

    # ------------------------------------------------------------------ checkpoints
    def _piece_buffer(self, seg, e, slot, *, allocate=False):
        """The inner state buffer of piece (seg, e) for `slot`, or None (empty piece)."""
        for i, (s, ee, _) in enumerate(self.pieces):
            if s is seg and ee == e:
                grp = self.inner._groups[i]
                if allocate:
                    grp.allocate(slot, self.inner._fill_value(slot))
                return grp.buffers[slot][1][0]
        return None

    def _params_of(self, seg, e):
        """Parameter indices of group entry e of seg, with their offsets in the group range."""
        g, off = seg.groups[e][0], 0
        for k in range(seg.first, seg.end):
            if self.group_of[k] == g:
                yield k, off
                off += self.sizes[k]

    def state_dict(self, root):
        """Collective: the single-process state_dict on `root`, None elsewhere."""
        sd = self.opt.state_dict() if self.rank == root else None
        if sd is not None:
            for k, g in enumerate(self.group_of):
                sd[f"state.{k}.step"] = self.steps[g]
        shapes = [tuple(np.shape(p)) for p in self.opt._param_arrays()]
        for seg in self.segments:
            for e, (g, lo, hi) in enumerate(seg.groups):
                counts, displs = seg.piece_counts(e, self.size)
                for slot in [s for s in self.opt._slots if s in self.present[g]]:
                    piece = self._piece_buffer(seg, e, slot)
                    local = np.zeros(0, seg.dtype) if piece is None else host_copy(piece).reshape(-1)
                    whole = np.empty(hi - lo, seg.dtype) if self.rank == root else None
                    self.comm.Gatherv(local, [whole, (counts, displs)] if whole is not None else None,
                                      root=root)
                    if whole is not None:
                        for k, off in self._params_of(seg, e):
                            sd[f"state.{k}.{slot}"] = whole[off:off + self.sizes[k]].reshape(shapes[k])
        return sd

    def check_checkpoint(self, sd) -> dict:
        """Root only: validate a single-process state_dict; returns what every rank needs."""
        sd = {key: sd[key] for key in sd}
        updates = _optim_state._check(self.opt, sd)
        steps, present = [], []
        for g, grp in enumerate(self.opt.param_groups):
            ks = [k for k, gg in enumerate(self.group_of) if gg == g]
            st = {int(np.asarray(sd[f"state.{k}.step"]).item()) for k in ks}
            if len(st) != 1:
                raise ValueError(f"shard_state=True keeps one step count per parameter group; "
                                 f"the checkpoint's group {g} has steps {sorted(st)}")
            slots = {s for s in self.opt._slots if any(f"state.{k}.{s}" in sd for k in ks)}
            for s in slots:
                if not all(f"state.{k}.{s}" in sd for k in ks):
                    raise ValueError(f"state '{s}' is missing for some parameters of group {g}")
            steps.append(st.pop())
            present.append(slots)
        return {"updates": updates, "steps": steps, "present": present, "sd": sd}

    def load(self, meta, root) -> None:
        """Collective: adopt the root's checked checkpoint (meta from check_checkpoint there;
        the other ranks pass meta with the same keys but no "sd")."""
        for group, upd in zip(self.opt.param_groups, meta["updates"]):
            group.update(upd)
        self.steps, self.present = list(meta["steps"]), [set(s) for s in meta["present"]]
        if self.inner is not None:
            for grp in self.inner._groups:
                grp.buffers = {}
            for grp, (_, _, g) in zip(self.inner._groups, self.pieces):
                grp.steps[:] = self.steps[g]
        sd = meta.get("sd")
        for seg in self.segments:
            for e, (g, lo, hi) in enumerate(seg.groups):
                counts, displs = seg.piece_counts(e, self.size)
                for slot in [s for s in self.opt._slots if s in self.present[g]]:
                    whole = None
                    if self.rank == root:
                        whole = np.concatenate([np.asarray(sd[f"state.{k}.{slot}"], seg.dtype).reshape(-1)
                                                for k, _ in self._params_of(seg, e)])
                    piece = self._piece_buffer(seg, e, slot, allocate=True)
                    local = np.empty(0 if piece is None else np.prod(np.shape(piece)), seg.dtype)
                    self.comm.Scatterv([whole, (counts, displs)] if whole is not None else None,
                                       local, root=root)
                    if piece is not None:
                        copy_into(piece, local)
        for grp in self.opt._groups:  # the wrapped optimizer holds no state of its own
            grp.buffers = {}
