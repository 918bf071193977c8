"""Data-dependent routing under fake tensors: real values for the small integer tensors that route.

A plain `FakeTensorMode` stops at the first op whose output shape depends on tensor values
(`aten.nonzero`, boolean-mask indexing `x[mask]`, `masked_select`, `.item()`). Models route tokens
that way: higgs-audio's DualFFN sends audio tokens to `audio_mlp` and text tokens to `mlp` with
`hidden_states[audio_token_mask]`, where the mask is `input_ids == audio_token_id`; MoE layers
(dbrx and others) select each expert's tokens with `torch.where(expert_mask[e])`.

`ValueShadow` is a `TorchDispatchMode` entered inside the trace's `FakeTensorMode` (so it sees
every op first). It keeps a real copy ("shadow") next to each small integer or boolean fake tensor
whose value is known:
- the token ids the harness feeds, built from what the workload states (which positions are audio
  tokens: `audio_token_share`), are given shadows with `set_value`;
- an op whose tensor inputs all have shadows and whose output is integer/boolean and small is
  also run on the shadows (masks, `~mask`, cumsum, arange, one_hot ...);
- `topk` indices (router choices computed from fake float logits, whose values are unknowable)
  get a *balanced* shadow: token t's j-th choice is expert (t x k + j) mod E, so every expert
  receives tokens x k / E of them. That is the routing the analytic estimate assumes; real routers
  are only approximately balanced (load-balancing loss, Switch Transformer, arXiv:2101.03961).
Before each op, a shadowed input gets FakeTensor's own memos (`nonzero_memo`: its count of
non-zeros; `item_memo`: its value), which torch's fake kernels for nonzero / boolean indexing /
item read instead of inventing an unbacked size. That needs a `ShapeEnv` on the mode
(`fake_mode()` below); an op that still produces an unbacked (symbolic) size, because its mask has
no known value, raises `DynamicOutputShapeException` as a plain trace does.

torch internals used (torch 2.13.0): `torch._subclasses.fake_impls.nonzero` and
`local_scalar_dense` read `FakeTensor.nonzero_memo` / `item_memo` (SymNumberMemoDescriptor, valid
while the tensor's version counter is unchanged); `fake_impls.index_tensor` runs the boolean-mask
`nonzero` under the fake mode, so the mask's memo is used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.fx.experimental.symbolic_shapes import ShapeEnv, free_unbacked_symbols
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakTensorKeyDictionary

# Largest tensor (elements) we keep a real copy of: token ids, masks and routing indices are
# batch x seq (x top_k) elements; anything bigger is an activation and is never shadowed.
MAX_SHADOW_ELEMENTS = 1 << 24
_TOPK = {torch.ops.aten.topk.default}


def fake_mode() -> FakeTensorMode:
    """The trace's FakeTensorMode: with a ShapeEnv, so fake nonzero/item consult the memos that
    `ValueShadow` sets (without one they raise before reading them). Scalar outputs stay off: an
    `.item()` whose value is unknown raises DataDependentOutputException, as without a ShapeEnv."""
    return FakeTensorMode(shape_env=ShapeEnv(allow_scalar_outputs=False))


# Floating-point tensors whose values are known (a `torch.zeros` the router fills with `scatter`)
# are shadowed up to this size. JetMoE's `JetMoeTopKGating.forward` (transformers 5.24
# modeling_jetmoe.py) counts each expert's tokens as `zeros([tokens, experts], dtype=gates.dtype)
# .scatter(1, top_k_indices, 1).long().sum(0).tolist()`: the one-hot matrix is float, so without a
# float shadow the counts are unknown. tokens x experts is 4,608 x 8 at the sweep's 3 x 1,536 tokens;
# an activation (tokens x hidden) is far larger and its factories are `empty`, never shadowed.
MAX_FLOAT_SHADOW_ELEMENTS = 1 << 22
_KNOWN_FACTORIES = {torch.ops.aten.zeros.default, torch.ops.aten.ones.default, torch.ops.aten.full.default,
                    torch.ops.aten.scalar_tensor.default}


def _shadowable(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.numel() <= MAX_SHADOW_ELEMENTS


def _float_shadowable(t: torch.Tensor) -> bool:
    return t.dtype.is_floating_point and t.numel() <= MAX_FLOAT_SHADOW_ELEMENTS


_ACTIVE: list[ValueShadow] = []


def active() -> ValueShadow | None:
    """The innermost `ValueShadow` entered, if any (the harness's input builders seed it)."""
    return _ACTIVE[-1] if _ACTIVE else None


class ValueShadow(TorchDispatchMode):
    """Keeps real values of small integer/bool fake tensors and feeds their counts to fake kernels."""

    def __init__(self) -> None:
        super().__init__()
        self._shadow = WeakTensorKeyDictionary()
        self.balanced_topk_calls = 0  # how many router top-k choices were given balanced routing

    def __enter__(self) -> ValueShadow:
        _ACTIVE.append(self)
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        _ACTIVE.remove(self)

    # -- seeding ------------------------------------------------------------------------------
    def set_value(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """Declare the value of `fake` (a token-id tensor the harness made)."""
        if isinstance(real, FakeTensor) or tuple(fake.shape) != tuple(real.shape):
            raise ValueError(f"a shadow must be a real tensor of the fake's shape {tuple(fake.shape)}")
        with unset_fake_temporarily():
            self._shadow[fake] = real.detach().clone()

    def value(self, fake: torch.Tensor) -> torch.Tensor | None:
        return self._shadow.get(fake)

    # -- dispatch -----------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        shadows = [self._shadow.get(t) for t in tensors]
        with unset_fake_temporarily():
            for t, s in zip(tensors, shadows, strict=True):
                if s is not None and isinstance(t, FakeTensor):
                    t.nonzero_memo = int(torch.count_nonzero(s))
                    if s.numel() == 1:
                        t.item_memo = s.item()
        versions = [t._version for t in tensors]
        out = func(*args, **kwargs)
        self._check_backed(func, out)
        if func in _TOPK:
            self._balanced_topk(args, kwargs, out)
        elif all(s is not None for s in shadows) or not tensors:
            self._propagate(func, args, kwargs, out)
        else:
            for t, s, v in zip(tensors, shadows, versions, strict=True):  # written with unknown values: forget them
                if s is not None and t._version != v:
                    self._shadow.pop(t, None)
        return out

    @staticmethod
    def _check_backed(func: Any, out: Any) -> None:
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and free_unbacked_symbols(t.shape):
                raise DynamicOutputShapeException(func)

    def _propagate(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:
            return
        # Float values are known only from a constant factory or an op whose tensor inputs all have
        # shadows (the only ops that get here with tensor inputs); `empty` (parameters, activations) never.
        inputs_known = any(isinstance(t, torch.Tensor) for t in tree_flatten((args, kwargs))[0]) or func in _KNOWN_FACTORIES
        if not all(_shadowable(t) or (inputs_known and _float_shadowable(t)) for t in outs):
            return

        def real(x: Any) -> Any:
            return self._shadow[x] if isinstance(x, torch.Tensor) else x

        try:
            with unset_fake_temporarily():
                real_out = func(*tree_map(real, args), **tree_map(real, kwargs))
        except Exception:  # a shadow only adds knowledge; an op that fails on real values just has none
            return
        real_outs = [t for t in tree_flatten(real_out)[0] if isinstance(t, torch.Tensor)]
        for fake, value in zip(outs, real_outs, strict=False):
            if tuple(fake.shape) == tuple(value.shape):
                self._shadow[fake] = value

    def _balanced_topk(self, args: tuple, kwargs: dict, out: Any) -> None:
        _values, indices = out
        k = args[1] if len(args) > 1 else kwargs.get("k")
        dim = args[2] if len(args) > 2 else kwargs.get("dim", -1)
        source = args[0]
        dim = dim % source.dim()
        choices = source.shape[dim]
        if not isinstance(k, int) or dim != source.dim() - 1 or not _shadowable(indices):
            return
        rows = indices.numel() // k
        with unset_fake_temporarily():
            flat = torch.arange(rows * k, dtype=torch.int64) % choices
            self._shadow[indices] = flat.reshape(indices.shape).to(indices.dtype)
        self.balanced_topk_calls += 1
