"""Trainer presets: the memory-relevant defaults of the loops people run, read from their code.

A preset is a starting point, not a mode: `preset_workload` fills every setting the preset
decides, and any setting passed explicitly wins. The engine sizes what the settings say
(`estimate`), so a preset is exactly its settings and each of them stays adjustable and shown.

Sources (each field below is the framework's default at that version, file named):

- TRL `SFTTrainer`, trl 1.16.0 (pip), `trl/trainer/base_config.py` (`gradient_checkpointing`
  default True; `bf16 = not (self.fp16) if self.bf16 is None` i.e. bf16 autocast on),
  `trl/trainer/sft_config.py` (`max_length` 1024, `loss_type="nll"`, `packing` False,
  `padding_free` False, `activation_offloading` False), `trl/trainer/sft_trainer.py` (a model
  given by id is loaded with `dtype` float32 unless `model_init_kwargs={"dtype": ...}`;
  `gradient_checkpointing_kwargs.setdefault("use_reentrant", False)`; `add_fused_lm_head`: the
  loss is computed in [4096-token x 32768-vocab] tiles without the logits, `trl/trainer/utils.py`
  `_CHUNKED_LOGPROB_CHUNK_SIZE = 32768`, `trl/kernels/chunked_logprob.py` `TOKEN_CHUNK_SIZE = 4096`;
  QLoRA adapters cast to bf16). Optimizer: `TrainingArguments.optim`, below.
- HF `Trainer`, transformers 5.24.0 (pip), `transformers/training_args.py`: `optim` default
  `"adamw_torch_fused"` on torch >= 2.8, `bf16` False, `activation_checkpointing` None (off);
  `from_pretrained` infers the checkpoint's dtype (bf16 for most), so the default is pure bf16
  with no autocast; `modeling_utils.py` `_activation_checkpointing_enable` uses
  `{"use_reentrant": False}` and `every_n_layers`.
- torchtune v0.6.1 (git tag), `recipes/configs/llama3_2/3B_full_single_device.yaml`
  (`optimizer: bitsandbytes.optim.PagedAdamW8bit`, `optimizer_in_bwd: True`,
  `loss: CEWithChunkedOutputLoss`, `enable_activation_checkpointing: True`,
  `enable_activation_offloading: False`, `dtype: bf16`) and `3B_lora_single_device.yaml`
  (`lora_attn_modules: ['q_proj', 'v_proj', 'output_proj']`, `apply_lora_to_mlp: True`,
  `lora_rank: 64`, `torch.optim.AdamW` with `fused: True`, `compile: False`, same loss/AC/offloading/dtype); the loss
  `torchtune/modules/loss/ce_chunked_output_loss.py` (`num_output_chunks: int = 8`). torchtune
  builds the whole model (adapters included) in bf16.
- Unsloth git tag v0.1.801-beta (2026-08-20): `unsloth/models/loader.py`
  `FastLanguageModel.from_pretrained(load_in_4bit = True, use_gradient_checkpointing = "unsloth")`
  and `unsloth/models/llama.py` `get_peft_model(r = 16, target_modules = [q, k, v, o, gate, up,
  down], lora_alpha = 16, lora_dropout = 0.0, use_gradient_checkpointing = "unsloth")`: its
  checkpointing offloads each layer's saved input to CPU (`Unsloth_Offloaded_Gradient_Checkpointer`,
  unsloth_zoo), and its fused cross-entropy never builds the fp32 logits. The trainer under it is
  TRL's (fused head); adapters of a 4-bit base are bf16 (as TRL casts them).
- axolotl v0.18.0 (git tag), `examples/llama-3/lora-1b.yml` (`lora_r: 16`, `sample_packing: true`,
  `optimizer: adamw_8bit`, `gradient_checkpointing: true`, `bf16: auto`,
  `attn_implementation: flash_attention_2`) with the Liger plugin
  (`src/axolotl/integrations/liger/args.py`: `liger_rope`, `liger_rms_norm`,
  `liger_glu_activation`, `liger_fused_linear_cross_entropy`); Liger-Kernel v0.8.2
  `src/liger_kernel/ops/fused_linear_cross_entropy.py` (chunks of
  `next_power_of_2(ceil(BT / ceil(V / H)))` tokens; `grad_input` and `grad_weight` computed in the
  forward). Liger and Unsloth kernels are Triton (GPU only): their terms are analytic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import InvalidWorkloadError

TrainerName = Literal["custom", "trl-sft", "hf-trainer", "torchtune", "unsloth", "axolotl-liger"]
TRAINERS: tuple[TrainerName, ...] = ("custom", "trl-sft", "hf-trainer", "torchtune", "unsloth", "axolotl-liger")
# What the app and the CLI assume for the fine-tuning modes when no trainer is named: TRL's
# SFTTrainer is what most Hugging Face fine-tuning runs today (the survey).
DEFAULT_TRAINER: TrainerName = "trl-sft"


# TrainerPreset fields that describe the framework rather than set a `Workload` field.
NOT_WORKLOAD_FIELDS = frozenset({"name", "label", "source", "max_length", "needs_lm_head", "kbit_upcast"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainerPreset:
    """The memory-relevant defaults of one training loop. Each field is a `Workload` field name
    (the value the preset gives it) except `name`, `label`, `max_length` and `source`."""

    name: TrainerName
    label: str
    source: str
    gradient_checkpointing: bool
    checkpoint_every: int
    activation_offload: bool
    loss_impl: str
    loss_chunks: int
    optimizer: str
    fused_optimizer: bool
    paged_optimizer: bool
    optimizer_in_backward: bool
    master_weights: bool  # full fine-tune: fp32 weights + bf16/fp16 autocast; LoRA: fp32 base
    adapter_precision: str
    lora_rank: int
    lora_targets: str
    norm_kernel: str  # "torch" (transformers' RMSNorm) or "liger"
    mlp_kernel: str  # "torch" or "liger" (SwiGLU saving gate and up only)
    packing: str
    max_length: int | None  # the trainer's truncation length (a note when the context exceeds it)
    needs_lm_head: bool  # the fused head multiplies `lm_head.weight` directly
    # Whether the loop runs peft's `prepare_model_for_kbit_training` on a bitsandbytes base, which
    # casts every 16-bit parameter that is not quantized (embeddings, norms, LM head) to fp32
    # (peft 0.21.2 `peft/utils/other.py`). A framework fact, not a setting: see `kbit_upcast`.
    kbit_upcast: bool = False

    def settings(self) -> dict[str, Any]:
        """The `Workload` fields this preset decides."""
        skip = NOT_WORKLOAD_FIELDS
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["trainer"] = self.name
        return out


PRESETS: dict[str, TrainerPreset] = {
    # The engine's settings as given: a plain PyTorch loop (foreach AdamW, full logits, no
    # checkpointing), which is what the FakeTensor calibration traces.
    "custom": TrainerPreset(
        name="custom", label="Custom loop (settings as set)", source="plain PyTorch loop: model(**batch).loss.backward(); AdamW(foreach=True)",
        gradient_checkpointing=False, checkpoint_every=1, activation_offload=False, loss_impl="full", loss_chunks=8,
        optimizer="adamw", fused_optimizer=False, paged_optimizer=False, optimizer_in_backward=False, master_weights=False,
        adapter_precision="fp32", lora_rank=16, lora_targets="all-linear", norm_kernel="torch", mlp_kernel="torch",
        packing="padded", max_length=None, needs_lm_head=False, kbit_upcast=True,
    ),
    "trl-sft": TrainerPreset(
        name="trl-sft", label="TRL SFTTrainer", source="trl 1.16.0 sft_config.py / base_config.py / sft_trainer.py",
        gradient_checkpointing=True, checkpoint_every=1, activation_offload=False, loss_impl="fused-linear", loss_chunks=8,
        optimizer="adamw", fused_optimizer=True, paged_optimizer=False, optimizer_in_backward=False, master_weights=True,
        adapter_precision="fp32", lora_rank=16, lora_targets="all-linear", norm_kernel="torch", mlp_kernel="torch",
        packing="padded", max_length=1024, needs_lm_head=True,
    ),
    "hf-trainer": TrainerPreset(
        name="hf-trainer", label="HF Trainer", source="transformers 5.24.0 training_args.py",
        gradient_checkpointing=False, checkpoint_every=1, activation_offload=False, loss_impl="full", loss_chunks=8,
        optimizer="adamw", fused_optimizer=True, paged_optimizer=False, optimizer_in_backward=False, master_weights=False,
        adapter_precision="fp32", lora_rank=16, lora_targets="all-linear", norm_kernel="torch", mlp_kernel="torch",
        packing="padded", max_length=None, needs_lm_head=False, kbit_upcast=True,
    ),
    "torchtune": TrainerPreset(
        name="torchtune", label="torchtune recipe", source="torchtune v0.6.1 recipes/configs/llama3_2/3B_{full,lora}_single_device.yaml",
        gradient_checkpointing=True, checkpoint_every=1, activation_offload=False, loss_impl="chunked-output", loss_chunks=8,
        optimizer="adamw", fused_optimizer=True, paged_optimizer=False, optimizer_in_backward=False, master_weights=False,
        adapter_precision="bf16", lora_rank=64, lora_targets="attention+mlp", norm_kernel="torch", mlp_kernel="torch",
        packing="padded", max_length=None, needs_lm_head=False,
    ),
    "unsloth": TrainerPreset(
        name="unsloth", label="Unsloth", source="unsloth v0.1.801-beta models/loader.py, models/llama.py",
        gradient_checkpointing=True, checkpoint_every=1, activation_offload=True, loss_impl="fused-linear-liger", loss_chunks=8,
        optimizer="adamw", fused_optimizer=True, paged_optimizer=False, optimizer_in_backward=False, master_weights=False,
        adapter_precision="bf16", lora_rank=16, lora_targets="all-linear", norm_kernel="torch", mlp_kernel="torch",
        packing="padded", max_length=None, needs_lm_head=True,
    ),
    "axolotl-liger": TrainerPreset(
        name="axolotl-liger", label="axolotl + Liger kernels", source="axolotl v0.18.0 examples/llama-3/lora-1b.yml; Liger-Kernel v0.8.2",
        gradient_checkpointing=True, checkpoint_every=1, activation_offload=False, loss_impl="fused-linear-liger", loss_chunks=8,
        optimizer="adamw-8bit", fused_optimizer=False, paged_optimizer=False, optimizer_in_backward=False, master_weights=False,
        adapter_precision="fp32", lora_rank=16, lora_targets="all-linear", norm_kernel="liger", mlp_kernel="liger",
        packing="packed", max_length=None, needs_lm_head=True, kbit_upcast=True,
    ),
}

# torchtune's full-finetune recipe differs from its LoRA one: 8-bit paged AdamW stepped inside
# backward (3B_full_single_device.yaml: `PagedAdamW8bit`, `optimizer_in_bwd: True`).
_MODE_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("torchtune", "full"): {"optimizer": "adamw-8bit", "paged_optimizer": True, "optimizer_in_backward": True},
}


def kbit_upcast(trainer: str) -> bool:
    """Whether `trainer` prepares a bitsandbytes (LLM.int8 / NF4) base with peft's
    `prepare_model_for_kbit_training`, upcasting its unquantized 16-bit parameters to fp32.

    - TRL 1.16 `SFTTrainer` does not (`trl/trainer/sft_trainer.py`: for a quantized model it only
      casts the trainable adapter parameters to bf16, and calls `enable_input_require_grads` with
      gradient checkpointing; `prepare_model_for_kbit_training` appears only in
      `trl/experimental/` trainers), so neither does Unsloth on top of it (its own
      `prepare_model_for_kbit_training`, `unsloth/models/_utils.py`, touches only the LoRA
      parameters). torchtune does not use peft.
    - A plain loop or an HF `Trainer` script following peft's QLoRA recipe calls it before
      `get_peft_model` (peft docs, developer_guides/quantization), and axolotl's loader does for
      LoRA/QLoRA on a k-bit base (`src/axolotl/loaders/model.py`
      `ModelLoader._prepare_model_for_quantization`)."""
    preset = PRESETS.get(trainer)
    return bool(preset and preset.kbit_upcast)


def get_preset(name: str) -> TrainerPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidWorkloadError(f"trainer must be one of {', '.join(TRAINERS)}; got {name!r}.") from None


def preset_settings(name: str, mode: str) -> dict[str, Any]:
    """The `Workload` fields `name` decides for `mode` (its recipe for that mode)."""
    settings = get_preset(name).settings()
    settings.update(_MODE_OVERRIDES.get((name, mode), {}))
    if name in ("trl-sft", "unsloth") and mode == "qlora":
        settings["adapter_precision"] = "bf16"  # sft_trainer.py: adapters of a quantized model -> bf16
        settings["master_weights"] = False  # the quantized base has no fp32 copy; its compute dtype is bf16
    return settings


def preset_workload(trainer: str, **explicit: Any) -> Any:
    """A `Workload` for `trainer`: its settings for the mode, then every explicit field on top.
    `explicit` values of None are ignored (an option not given on the command line)."""
    from .workload import Workload

    given = {k: v for k, v in explicit.items() if v is not None}
    mode = given.get("mode", "inference")
    settings = preset_settings(trainer, mode) if mode != "inference" else {"trainer": trainer}
    return Workload(**(settings | given | {"trainer": trainer}))


# The trainer sized when the chosen one cannot start on a model (its fused LM-head loss needs one
# `lm_head.weight`): HF Trainer (transformers 5.24.0 `Trainer.compute_loss`) takes the model's own loss
# from the full logits, and every other setting a preset fills is one of its options too
# (`TrainingArguments.gradient_checkpointing`, `bf16`/`fp16` autocast over a model loaded in fp32,
# `optim`, peft's adapters), so the same settings with the full-logits loss are a run that starts.
FALLBACK_TRAINER: TrainerName = "hf-trainer"

# Whether the framework has a setting that turns its fused head off (read from its code).
_NO_SWITCH: dict[str, str] = {
    # trl 1.16.0 trainer/sft_trainer.py: `__init__` calls `add_fused_lm_head` unconditionally, and
    # `compute_loss` runs `model(**inputs, fused_lm_head=True)` on every step; with `compute_loss_func`
    # or `label_smoothing_factor` the loss comes from the full logits but the fused forward still runs
    # (under no_grad) for the token metrics. `use_liger_kernel` does not replace it (it forces
    # `fused_linear_cross_entropy` off). `loss_type` takes only "nll" and "dft", both fused.
    "trl-sft": "No SFTConfig setting turns the fused head off in TRL 1.16 (SFTTrainer adds it at construction and runs it on "
    "every step, even with compute_loss_func or label smoothing, for its token metrics).",
    # unsloth models/llama.py patches its fused cross-entropy into the causal-LM forward over `lm_head`.
    "unsloth": "Unsloth patches its fused cross-entropy into the model's forward over that one weight.",
    # axolotl src/axolotl/integrations/liger/args.py: `liger_fused_linear_cross_entropy` (default on in the example).
    "axolotl-liger": "axolotl's `liger_fused_linear_cross_entropy: false` turns the fused loss off (the HF Trainer run below).",
}


def lm_head_problem(spec: Any, trainer: str) -> str:
    """Why `trainer`'s fused LM-head loss cannot run on this model ('' when it can).

    TRL's `add_fused_lm_head` multiplies `model.get_output_embeddings().weight` directly; a model
    whose output layer is not a single `lm_head` (e.g. higgs-audio-v2's `audio_lm_head` +
    `text_lm_head`) has no such weight, so `SFTTrainer` fails at its first step. Decided from the
    model's own modules (`spec.linears`), never its name."""
    preset = PRESETS.get(trainer)
    if preset is None or not preset.needs_lm_head or not spec.is_causal_lm:
        return ""
    heads = [g.name for g in spec.linears if g.role == "head"]
    if len(heads) == 1 or (not heads and spec.tie_word_embeddings):
        return ""
    shown = f"{len(heads)} output heads ({', '.join(heads)})" if heads else "no output layer"
    fallback = PRESETS[FALLBACK_TRAINER].label
    return (
        f"{preset.label} fails at its first step on this model: its fused LM-head loss multiplies one `lm_head.weight`, "
        f"and this model has {shown}. {_NO_SWITCH.get(trainer, '')} "
        f"Sized instead: {fallback} with the same settings, the loss taken from the full logits (trainer={FALLBACK_TRAINER})."
    ).replace("  ", " ")


def runnable_workload(spec: Any, workload: Any) -> tuple[Any, str]:
    """(the workload that is sized, why the chosen trainer cannot start or ''). When the trainer's
    fused head cannot run on `spec`, the run that does start is `FALLBACK_TRAINER` with the same
    settings and the full-logits loss; a link or CLI call naming that trainer with those settings
    gives the same figures (tests/test_trainers.py)."""
    from dataclasses import replace

    problem = lm_head_problem(spec, workload.trainer) if workload.is_training else ""
    if not problem:
        return workload, ""
    return replace(workload, trainer=FALLBACK_TRAINER, loss_impl="full", notes=(problem, *workload.notes)), problem


def switch_settings(workload: Any) -> dict[str, Any]:
    """The `Workload` fields that, with `trainer=FALLBACK_TRAINER`, reproduce `workload`'s sized run:
    every preset-decided setting as it is, and the full-logits loss (one click on the page, one
    `--trainer hf-trainer ...` call in the CLI)."""
    skip = NOT_WORKLOAD_FIELDS
    out = {f.name: getattr(workload, f.name) for f in fields(TrainerPreset) if f.name not in skip}
    return out | {"trainer": FALLBACK_TRAINER, "loss_impl": "full"}
