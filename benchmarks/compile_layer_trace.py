"""What a torch.compile'd decoder layer saves for backward, vs the same layer in eager.

    nice -n 10 python benchmarks/compile_layer_trace.py [--model ID] [--batch 2] [--seq 256] [--out benchmarks/results]

torchtune's `compile=True` compiles every decoder layer on its own (`training.compile_model`
compiles each `TransformerSelfAttentionLayer`), with inductor, whose AOT-autograd partitioner is
`min_cut_rematerialization_partition` (torch 2.13 `torch/_functorch/partitioners.py`): it saves
the fewest bytes it can for backward and recomputes cheap pointwise ops (norms, SiLU, products,
casts) in the backward instead. This script compiles one bf16 decoder layer of a catalog config
(random weights, CPU) with `backend="aot_eager"`'s nop compilers but inductor's decompositions and
partitioner (the `aot_eager_decomp_partition` backend, written out so the partitioned forward can
be read), and lists the forward graph's outputs after the layer's own output: those are the
tensors saved for backward. Weights (graph inputs that are parameters) are not activations and are
left out; the layer's input, when saved, is counted (it is the previous layer's output, which eager
frees). The eager side is the same layer under `torch.autograd.graph.saved_tensors_hooks`,
unique storages, parameters left out. Bytes per token = bytes / (batch x seq); `--seq` is kept
small (all these tensors are linear in tokens with SDPA; the flash kernels save per-token
log-sum-exp only). Writes `compile_layer_trace.md` / `.json` under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def build_layer(model_id: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from calculator.catalog import catalog_config, find_catalog_entry

    raw = dict(catalog_config(find_catalog_entry(model_id)))
    raw.update(num_hidden_layers=1, vocab_size=256)  # only the decoder layer is measured
    raw.pop("quantization_config", None)
    cfg = AutoConfig.for_model(raw.pop("model_type"), **{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})
    cfg._attn_implementation = "sdpa"  # torchtune uses SDPA
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.train()
    return model, cfg


def layer_inputs(model, batch: int, seq: int):
    import torch

    h = model.config.hidden_size
    x = torch.randn(batch, seq, h, dtype=torch.bfloat16, requires_grad=True)
    pos = torch.arange(seq).unsqueeze(0).expand(batch, -1)
    cos_sin = model.model.rotary_emb(x, pos)
    return x, pos, cos_sin


def hooked_saved(layer, x, pos, cos_sin) -> dict:
    import torch

    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    shared = {t.untyped_storage().data_ptr() for t in cos_sin}
    seen: dict[int, tuple] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = (tuple(t.shape), str(t.dtype).replace("torch.", ""), t.untyped_storage().nbytes(), ptr in shared)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, attention_mask=None, position_ids=pos, position_embeddings=cos_sin)
    return {"tensors": list(seen.values())}


def eager_saved(layer, x, pos, cos_sin) -> dict:
    return hooked_saved(layer, x, pos, cos_sin)


def compiled_saved(layer, x, pos, cos_sin) -> dict:
    import functools

    import torch
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    from torch._inductor.compile_fx import select_decomp_table

    captured: list = []

    def fw_compiler(gm, example_inputs):
        captured.append(gm)
        return gm.forward if hasattr(gm, "forward") else gm

    def bw_compiler(gm, example_inputs):
        return gm

    from functorch.compile import make_boxed_func

    backend = aot_autograd(
        fw_compiler=lambda gm, ex: make_boxed_func(fw_compiler(gm, ex)),
        bw_compiler=lambda gm, ex: make_boxed_func(bw_compiler(gm, ex)),
        decompositions=select_decomp_table,
        partition_fn=functools.partial(min_cut_rematerialization_partition, compiler="inductor"),
    )
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend=backend, fullgraph=True)
    compiled(x, attention_mask=None, position_ids=pos, position_embeddings=cos_sin)  # compiles
    # The compiled autograd function saves with ctx.save_for_backward, which the hooks see: unique
    # storages (a view saved next to its base is one tensor), parameters left out.
    hooked = hooked_saved(compiled, x, pos, cos_sin)
    (gm,) = captured  # one graph: fullgraph=True
    shared_shapes = {tuple(t.shape) for t in cos_sin}
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    user_outputs = 1  # the decoder layer returns its hidden states
    tensors = []
    for node in out[user_outputs:]:
        val = node.meta.get("val") if hasattr(node, "meta") else None
        if not isinstance(val, torch.Tensor):
            continue
        shape = tuple(val.shape)
        if node.op == "placeholder" and shape == tuple(x.shape):
            kind = "layer input"
        elif node.op == "placeholder" and shape in shared_shapes:
            kind = "rope"
        elif node.op == "placeholder":
            kind = "weight"
        else:
            kind = str(node.target).replace("aten.", "")
        tensors.append((shape, str(val.dtype).replace("torch.", ""), _nbytes(val), kind))
    return {"tensors": tensors, "hooked": hooked["tensors"], "graph_ops": len([n for n in gm.graph.nodes if n.op == "call_function"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="meta-llama/Llama-3.2-3B-Instruct")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)

    import torch

    from calculator import memory
    from calculator.resolve import resolve_catalog

    model, _ = build_layer(args.model)
    layer = model.model.layers[0]
    tokens = args.batch * args.seq
    x, pos, cos_sin = layer_inputs(model, args.batch, args.seq)
    eager = eager_saved(layer, x, pos, cos_sin)
    x2 = x.detach().clone().requires_grad_(True)
    comp = compiled_saved(layer, x2, pos, cos_sin)

    eager_act = sum(b for _, _, b, shared in eager["tensors"] if not shared)
    comp_act = sum(b for _, _, b, shared in comp["hooked"] if not shared)
    comp_listed = sum(b for _, _, b, kind in comp["tensors"] if kind not in ("weight", "rope"))
    spec = resolve_catalog(args.model).spec
    formula = memory.layer_saved_bytes_per_token(spec, compute_bytes=2, seq_len=args.seq, attention="sdpa", adapters=None)
    compiled_formula = memory.compiled_layer_saved_bytes_per_token(spec, compute_bytes=2)
    result = {
        "model": args.model,
        "torch": torch.__version__,
        "batch": args.batch,
        "seq": args.seq,
        "eager_bytes_per_token": eager_act / tokens,
        "compiled_bytes_per_token": comp_act / tokens,
        "ratio": comp_act / eager_act,
        "engine_eager_bytes_per_token": formula,
        "engine_compiled_bytes_per_token": compiled_formula,
        "eager_tensors": eager["tensors"],
        "compiled_tensors": comp["tensors"],
    }
    lines = [
        f"# torch.compile'd decoder layer: saved for backward ({args.model}, bf16, full fine-tune)",
        "",
        f"torch {torch.__version__}; one layer, batch {args.batch} x seq {args.seq}, SDPA, min-cut partitioner (inductor decompositions);"
        " `python benchmarks/compile_layer_trace.py`.",
        "",
        "| | bytes / token / layer |",
        "|---|---|",
        f"| eager, traced (saved_tensors_hooks) | {eager_act / tokens:,.0f} |",
        f"| eager, engine (`layer_saved_bytes_per_token`) | {formula:,} |",
        f"| compiled, traced (saved_tensors_hooks on the compiled layer, unique storages) | {comp_act / tokens:,.0f} |",
        f"| compiled, partitioned forward's saved outputs summed (views of one storage counted twice) | {comp_listed / tokens:,.0f} |",
        f"| compiled, engine (`compiled_layer_saved_bytes_per_token`) | {compiled_formula:,} |",
        f"| compiled / eager (traced) | {comp_act / eager_act:.3f} |",
        "",
        "Compiled forward's saved tensors (weights and the shared RoPE cos/sin listed, not counted):",
        "",
        "| shape | dtype | bytes / token | from |",
        "|---|---|---|---|",
    ]
    for shape, dtype, b, kind in comp["tensors"]:
        lines.append(f"| {list(shape)} | {dtype} | {b / tokens:,.1f} | {kind} |")
    lines += ["", "Eager saved tensors (unique storages, parameters left out):", "", "| shape | dtype | bytes / token | shared RoPE |", "|---|---|---|---|"]
    for shape, dtype, b, shared in eager["tensors"]:
        lines.append(f"| {list(shape)} | {dtype} | {b / tokens:,.1f} | {'yes' if shared else ''} |")
    text = "\n".join(lines) + "\n"
    print(text)
    stem = "compile_layer_trace" + ("" if args.model == "meta-llama/Llama-3.2-3B-Instruct" else "_" + args.model.split("/")[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=list) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
