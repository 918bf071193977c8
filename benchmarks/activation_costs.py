"""What each of transformers' activation functions saves for backward and holds without grad.

    python benchmarks/activation_costs.py        # seconds, CPU; writes benchmarks/results/activation_costs.txt

For every ACT2FN name, on a real bf16 tensor of N elements: the storages autograd saves
(`torch.autograd.graph.saved_tensors_hooks`), split into the input, the output and other
intermediates (in units of N x 2 bytes), and under `torch.no_grad()` the peak of storages alive
at once, input and output included (a dispatch-mode tracker with weakref finalizers). These are
the numbers of `calculator.memory.ACTIVATIONS`; tests/test_memory.py checks that table against this
measurement when torch is installed.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "activation_costs.txt"
N = 1 << 16


def measure(name: str) -> tuple[bool, bool, int, int]:
    """(saves input, saves output, other saved tensors, no-grad peak) of ACT2FN[name], in I-wide tensors."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from transformers.activations import ACT2FN

    act = ACT2FN[name]
    x = torch.randn(N, dtype=torch.bfloat16, requires_grad=True)
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = act(x)
    xs, ys = x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()
    other = sum(v for k, v in saved.items() if k not in (xs, ys)) // (2 * N)
    live: dict[int, int] = {}
    state = {"cur": 2 * N, "peak": 2 * N}

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    key = st.data_ptr()
                    if key in live or key == 0:
                        continue
                    live[key] = st.nbytes()
                    state["cur"] += st.nbytes()
                    state["peak"] = max(state["peak"], state["cur"])

                    def gone(k: int = key, n: int = st.nbytes()) -> None:
                        live.pop(k, None)
                        state["cur"] -= n

                    weakref.finalize(st, gone)
            return out

    with torch.no_grad():
        x2 = torch.randn(N, dtype=torch.bfloat16)
        with Track():
            y2 = act(x2)
        del y2
    return xs in saved, ys in saved, other, state["peak"] // (2 * N)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    import torch
    import transformers
    from transformers.activations import ACT2CLS

    warnings.simplefilter("ignore")
    lines = [f"ACT2FN costs, bf16, torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}",
             "name | saves input | saves output | other saved | no-grad peak (I-wide tensors, input and output included)"]
    for name in sorted(ACT2CLS):
        try:
            si, so, other, peak = measure(name)
        except Exception as e:  # an activation with parameters of another dtype (prelu), or one needing CUDA
            lines.append(f"{name} | not measured: {type(e).__name__}")
            continue
        lines.append(f"{name} | {si} | {so} | {other} | {peak}")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
