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
step count per group: the shards of a group always step together. Only the optimizers' methods
for wrappers are used (fusedops.optim: clone, check_step, state_names, ...); the inner
optimizer's state moves through its own state_dict / load_state_dict.
"""
from __future__ import annotations

import numpy as np

from .._arrays import full
from ..checks import check_like
from ._comm import MPI, Staged, all_finite
from ._layout import Segment, runs

__all__ = ["ZeroShards"]


def _is_buffer_key(key: str, names) -> bool:
    """A state_dict key `state.<k>.<name>` of a state buffer (not a step count)."""
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "state" and parts[2] in names


def _drop_state(opt) -> None:
    """Release opt's state buffers, keeping its steps and hyperparameters: under ZeRO the
    wrapped optimizer holds no state of its own."""
    names = set(opt.state_names())
    sd = opt.state_dict()
    opt.load_state_dict({k: v for k, v in sd.items() if not _is_buffer_key(k, names)})


class ZeroShards:
    """The sharded state of optimizer `opt` on communicator `comm` (see the module docstring)."""

    def __init__(self, opt, comm):
        self.opt, self.comm = opt, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        params = opt.param_arrays()
        self.sizes = [int(np.prod(np.shape(p))) for p in params]
        self.group_of = [g for g, grp in enumerate(opt.param_groups) for _ in grp["params"]]
        self.segments = [Segment(i, j, flat, self.sizes, self.group_of, self.size)
                         for i, j, flat in runs(params)]
        self.steps = [0] * len(opt.param_groups)
        self.present = [set() for _ in opt.param_groups]  # state buffers each group has
        self.pieces, inner_groups, self.gshards, self.inner_grads = [], [], [], []
        self.piece_of = {}  # (segment index, group entry) -> (inner parameter index, size)
        for si, seg in enumerate(self.segments):
            a, b = seg.shard(self.rank)
            device = not isinstance(seg.flat, np.ndarray)
            gshard = full(b - a, seg.dtype, device)
            self.gshards.append(gshard)
            for e, (g, lo, hi) in enumerate(seg.pieces(self.rank)):
                if hi > lo:
                    self.piece_of[si, e] = (len(self.pieces), hi - lo)
                    self.pieces.append((seg, e, g))
                    inner_groups.append({**self._hyper(g), "params": [seg.flat[lo:hi]]})
                    self.inner_grads.append(gshard[lo - a:hi - a])
        self.inner = opt.clone(inner_groups) if inner_groups else None
        self._key = None

    def _hyper(self, g):
        return {k: v for k, v in self.opt.param_groups[g].items() if k != "params"}

    # ------------------------------------------------------------------ a step
    def check(self, grads):
        """Local validation of a step (before any collective): the gradients, laid out as the
        parameters, and the hyperparameters (copied into the inner optimizer)."""
        params = self.opt.param_arrays()
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
            self.inner.check_step(self.inner_grads)

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
            self.present[g] |= set(self.opt.state_names(g))

    def allgather_params(self, seg) -> None:
        buf = Staged(seg.flat)
        self.comm.Allgatherv(MPI.IN_PLACE, [buf.buf, (seg.counts, seg.displs)])
        buf.finish()

    def nbytes(self) -> int:
        return 0 if self.inner is None else self.inner.state_nbytes()

    # ------------------------------------------------------------------ checkpoints
    def _slots(self, g):
        """The state buffers group g has, in the optimizer's order (the same on every rank)."""
        return [s for s in self.opt.state_names() if s in self.present[g]]

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
        shapes = [tuple(np.shape(p)) for p in self.opt.param_arrays()]
        isd = self.inner.state_dict() if self.inner is not None else {}
        for si, seg in enumerate(self.segments):
            for e, (g, lo, hi) in enumerate(seg.groups):
                counts, displs = seg.piece_counts(e, self.size)
                i, _ = self.piece_of.get((si, e), (None, 0))
                for slot in self._slots(g):
                    local = (np.zeros(0, seg.dtype) if i is None else
                             np.ascontiguousarray(isd[f"state.{i}.{slot}"], seg.dtype).reshape(-1))
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
        updates = self.opt.check_state_dict(sd)
        steps, present = [], []
        for g, grp in enumerate(self.opt.param_groups):
            ks = [k for k, gg in enumerate(self.group_of) if gg == g]
            st = {int(np.asarray(sd[f"state.{k}.step"]).item()) for k in ks}
            if len(st) != 1:
                raise ValueError(f"shard_state=True keeps one step count per parameter group; "
                                 f"the checkpoint's group {g} has steps {sorted(st)}")
            slots = {s for s in self.opt.state_names() if any(f"state.{k}.{s}" in sd for k in ks)}
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
        sd, received = meta.get("sd"), {}
        for si, seg in enumerate(self.segments):
            for e, (g, lo, hi) in enumerate(seg.groups):
                counts, displs = seg.piece_counts(e, self.size)
                i, size = self.piece_of.get((si, e), (None, 0))
                for slot in self._slots(g):
                    whole = None
                    if self.rank == root:
                        whole = np.concatenate([np.asarray(sd[f"state.{k}.{slot}"], seg.dtype).reshape(-1)
                                                for k, _ in self._params_of(seg, e)])
                    local = np.empty(size, seg.dtype)
                    self.comm.Scatterv([whole, (counts, displs)] if whole is not None else None,
                                       local, root=root)
                    if i is not None:
                        received[f"state.{i}.{slot}"] = local
        if self.inner is not None:  # the pieces as the inner optimizer's own checkpoint
            names = set(self.inner.state_names())
            isd = {k: v for k, v in self.inner.state_dict().items()
                   if not _is_buffer_key(k, names)}
            isd.update({f"state.{i}.step": self.steps[g] for i, (_, _, g) in enumerate(self.pieces)})
            self.inner.load_state_dict({**isd, **received})
        _drop_state(self.opt)
