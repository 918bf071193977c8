"""Hostile config.json, safetensors headers and indexes (issue 8, defects 3, 5, 6): every one gives
a spec within the dimension bounds or one `CalculatorError` line; never a traceback, a memory
blow-up or a result from impossible input.

Hypothesis runs are bounded (max_examples, no per-example deadline) so this file costs a few
seconds; the CLI runs measure exit code, stderr, wall time and peak RSS of the child process.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hostile_support import MAX_CHILD_RSS_BYTES, MAX_CLI_SECONDS, assert_one_line_error, catalog_config, model_dir, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calculator import bounds, checkpoint
from calculator.errors import CalculatorError, MalformedConfigError, ModelNotFoundError
from calculator.report import build_plan
from calculator.resolve import read_safetensors_counts, resolve_local, resolve_model
from calculator.spec import ModelSpec, model_spec_from_config
from calculator.verify.compare import VerificationError, run_verification
from calculator.workload import Workload

LLAMA = catalog_config("meta-llama__Llama-3.2-3B")
MIXTRAL = catalog_config("mistralai__Mixtral-8x7B-v0.1")
DEEPSEEK = catalog_config("deepseek-ai__DeepSeek-V3")
BASES = {"llama": LLAMA, "mixtral": MIXTRAL, "deepseek": DEEPSEEK, "bert": catalog_config("google-bert__bert-base-uncased"),
         "opt": catalog_config("facebook__opt-350m"), "gptj": catalog_config("EleutherAI__gpt-j-6b")}
HOSTILE_VALUES = [
    float("nan"), float("inf"), -float("inf"), -1, 0, 1.5, 10**9, 10**30, 1e30, 2**64, "abc", "4096", [], [1, 2], {}, {"a": 1},
    True, False, None, "x" * 10_000,
]


def _within_bounds(spec: ModelSpec) -> None:
    """A spec that was accepted has every dimension inside its bound and a finite, bounded total."""
    assert 0 < spec.num_hidden_layers <= bounds.MAX_LAYERS.limit
    assert 0 < spec.hidden_size <= bounds.MAX_HIDDEN.limit
    assert 0 < spec.vocab_size <= bounds.MAX_VOCAB.limit
    assert spec.num_experts <= bounds.MAX_EXPERTS.limit
    assert spec.max_position_embeddings <= bounds.MAX_POSITIONS.limit
    assert len(spec.layer_types) <= bounds.MAX_LAYERS.limit
    assert 0 <= spec.config_num_params <= bounds.MAX_PARAMS


# --- Hypothesis over config.json mutations ---------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(sorted(BASES)),
    edits=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(sorted({k for c in BASES.values() for k in c})), st.sampled_from(
                ["layer_types", "mlp_only_layers", "rope_scaling", "quantization_config", "text_config", "sliding_window",
                 "decoder_sparse_step", "max_window_layers", "sliding_window_pattern", "head_dim", "num_local_experts"])),
            st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=5), st.lists(st.integers(-3, 3), max_size=4),
                      st.dictionaries(st.sampled_from(["factor", "original_max_position_embeddings", "quant_method", "bits",
                                                       "group_size", "modules_to_not_convert", "weight_block_size"]),
                                      st.one_of(st.sampled_from(HOSTILE_VALUES), st.sampled_from(["gptq", "awq", "fp8", "bitsandbytes"])),
                                      max_size=4)),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_config_gives_a_bounded_spec_or_one_error(base: str, edits: list) -> None:
    config = json.loads(json.dumps(BASES[base]))
    for key, value in edits:
        config[key] = value
    try:
        spec = model_spec_from_config("org/mutated", config)
        _within_bounds(spec)
        # An accepted spec goes through the whole engine: the estimate, the GPU ranking, the table.
        plan = build_plan(spec, Workload(context_length=2048))
        assert plan.estimate.total_bytes > 0
    except CalculatorError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000


# --- the reproductions of the issue, one by one -------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("num_hidden_layers", 1_000_000_000, r"`num_hidden_layers` = 1,000,000,000 is above the largest value accepted \(2,048: 16x the deepest"),
        ("num_hidden_layers", 10_000_000, "num_hidden_layers"),
        ("vocab_size", 1e30, r"`vocab_size` = 1,000,000,000,000,000,019,884,624,838,656 is above .*4,194,304"),
        ("hidden_size", float("nan"), r"`hidden_size` should be a non-negative integer, got nan"),
        ("hidden_size", float("inf"), r"`hidden_size` should be a non-negative integer, got inf"),
        ("intermediate_size", "8192", r"`intermediate_size` should be a non-negative integer, got '8192'"),
        ("num_attention_heads", [24], r"`num_attention_heads` should be a non-negative integer"),
        ("max_position_embeddings", 10**12, "max_position_embeddings"),
        ("architectures", 5, r"`architectures` should be a list of strings, got 5"),
        ("layer_types", "full", "`layer_types` should be a list of strings"),
        ("sliding_window", "abc", "`sliding_window` should be a non-negative whole number"),
        ("rope_scaling", {"factor": float("inf"), "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_scaling.factor"),
        ("rope_scaling", {"factor": 1e12, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "max_position_embeddings"),
        ("quantization_config", [1], "`quantization_config` should be a JSON object, got \\[1\\]"),
        ("quantization_config", {"quant_method": "gptq", "bits": "four"}, r"quantization_config: `bits` should be a whole number"),
        ("quantization_config", {"quant_method": "gptq", "bits": 4, "group_size": 0}, "`group_size` should be a whole number"),
        ("quantization_config", {"quant_method": "awq", "modules_to_not_convert": [1, 2]}, "`modules_to_not_convert` should be a list"),
        ("quantization_config", {"quant_method": "fp8", "weight_block_size": [128]}, "`weight_block_size` should be two positive"),
    ],
)
def test_hostile_field_is_one_clear_error(key: str, value: object, match: str) -> None:
    with pytest.raises(MalformedConfigError, match=match):
        model_spec_from_config("org/hostile", {**LLAMA, key: value})


def test_real_gptq_group_size_minus_one_still_reads() -> None:
    # GPTQ writes group_size -1 for "one group per column" (auto-gptq BaseQuantizeConfig).
    spec = model_spec_from_config("org/gptq", {**LLAMA, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": -1}})
    assert spec.quantization is not None and spec.quantization.group_size == -1


def test_every_catalog_model_is_within_the_bounds() -> None:
    for folder in sorted(p.parent.name for p in (Path(checkpoint.__file__).parent / "data" / "models").glob("*/config.json")):
        _within_bounds(model_spec_from_config(folder, catalog_config(folder)))


def test_implausible_total_is_refused_or_flagged() -> None:
    # 2,048 layers x (hidden 131,072)^2 x ~12 is ~4e14 parameters: above MAX_PARAMS (1e14).
    with pytest.raises(MalformedConfigError, match=r"implies .* parameters, above the 1e\+14 accepted"):
        model_spec_from_config("org/absurd", {**LLAMA, "num_hidden_layers": 2048, "hidden_size": 131_072, "intermediate_size": 524_288,
                                              "num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 128})
    big = model_spec_from_config("org/huge", {**LLAMA, "num_hidden_layers": 512, "hidden_size": 32_768, "intermediate_size": 131_072,
                                               "num_attention_heads": 256, "num_key_value_heads": 256, "head_dim": 128})
    assert big.config_num_params > bounds.PLAUSIBLE_PARAMS
    assert any("more than any public model" in n for n in big.notes)


def test_deeply_nested_config_is_one_error_not_a_recursion_error() -> None:
    deep = b'{"model_type": "llama", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(MalformedConfigError, match=r"nested too deeply|nested more than"):
        checkpoint.parse_config(deep, where="config.json of org/deep")
    shallow_but_deep = {"model_type": "llama"}
    node = shallow_but_deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(MalformedConfigError, match="nested more than 64 levels"):
        model_spec_from_config("org/deep", {**LLAMA, **shallow_but_deep})


def test_huge_config_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, None, raw=b'{"model_type": "llama", "pad": "' + b"x" * (bounds.MAX_CONFIG_BYTES + 10) + b'"}')
    with pytest.raises(MalformedConfigError, match="larger than 8 MiB"):
        resolve_local(folder)


# --- safetensors headers and indexes ----------------------------------------------------------------


def _header(entries: object) -> bytes:
    raw = json.dumps(entries).encode()
    return struct.pack("<Q", len(raw)) + raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(
            st.fixed_dictionaries({"dtype": st.sampled_from(["BF16", "F32", "U8", "Q9", 5, None]),
                                   "shape": st.one_of(st.lists(st.one_of(st.integers(-5, 2**40), st.floats(), st.text(max_size=2)), max_size=10),
                                                      st.integers(), st.none())}),
            st.fixed_dictionaries({"dtype": st.just("F16")}),
            st.sampled_from([None, 1, "x", [1, 2]]),
        ),
        max_size=6,
    )
)
def test_any_header_gives_positive_counts_or_one_error(header: dict) -> None:
    try:
        counts = checkpoint.parse_header(json.dumps(header).encode(), what="model.safetensors")
    except MalformedConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert all(isinstance(n, int) and n > 0 for n in counts.values())
    assert sum(counts.values()) <= bounds.MAX_PARAMS


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({"w": {"dtype": "BF16", "shape": [-1000, 4096]}}, "shape"),
        ({"w": {"dtype": "BF16", "shape": [0, 4096]}}, "shape"),
        ({"w": {"dtype": "BF16", "shape": [4096.0, 2]}}, "shape"),
        ({"w": {"dtype": "BF16"}}, "shape"),
        ({"w": {"shape": [2, 2]}}, "dtype"),
        ({"w": "BF16"}, "no dtype/shape entry"),
        ([1, 2, 3], "not an object"),
        ({"w": {"dtype": "BF16", "shape": [2**40, 2**40]}}, "more than 1e\\+14 parameters"),
    ],
)
def test_impossible_local_header_is_refused(tmp_path: Path, entries: object, match: str) -> None:
    folder = model_dir(tmp_path, LLAMA, files={"model.safetensors": _header(entries)})
    with pytest.raises(MalformedConfigError, match=match):
        read_safetensors_counts(folder)


@pytest.mark.parametrize(
    "raw",
    [struct.pack("<Q", 2**60) + b"{}", struct.pack("<Q", 100) + b"{}", b"\x01\x02"],
)
def test_header_length_lies_are_refused(tmp_path: Path, raw: bytes) -> None:
    folder = model_dir(tmp_path, LLAMA, files={"model.safetensors": raw})
    with pytest.raises(MalformedConfigError, match="safetensors"):
        read_safetensors_counts(folder)


@pytest.mark.parametrize(
    ("index", "match"),
    [
        ([{"total_size": 10}], "not an object"),
        ({"metadata": {"total_size": 1e40}, "weight_map": {"w": "model-1.safetensors"}}, "total_size"),
        ({"metadata": {"total_size": -5}, "weight_map": {"w": "model-1.safetensors"}}, "total_size"),
        ({"metadata": {"total_size": "big"}, "weight_map": {"w": "model-1.safetensors"}}, "total_size"),
        ({"metadata": {"total_size": 10}, "weight_map": ["model-1.safetensors"]}, "weight_map"),
        ({"metadata": {"total_size": 10}, "weight_map": {"w": "../../etc/passwd"}}, "not a .safetensors file"),
        ({"metadata": {"total_size": 10}, "weight_map": {"w": 7}}, "not a .safetensors file"),
    ],
)
def test_impossible_index_is_refused(tmp_path: Path, index: object, match: str) -> None:
    folder = model_dir(tmp_path, LLAMA, files={"model.safetensors.index.json": json.dumps(index).encode()})
    with pytest.raises(MalformedConfigError, match=match):
        resolve_local(folder)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _JSON,
        st.fixed_dictionaries({"metadata": st.one_of(_JSON, st.fixed_dictionaries({"total_size": _JSON})),
                               "weight_map": st.one_of(_JSON, st.dictionaries(st.text(max_size=6), st.one_of(
                                   _JSON, st.sampled_from(["model-1.safetensors", "a/b.safetensors", "../x.safetensors", "/abs.safetensors"])),
                                   max_size=4))}),
    )
)
def test_any_index_gives_shards_and_a_sane_total_or_one_error(index: object) -> None:
    try:
        shards, total = checkpoint.parse_index(json.dumps(index).encode(), what="model.safetensors.index.json")
    except MalformedConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert shards and all(s.endswith(".safetensors") and ".." not in s and not s.startswith("/") for s in shards)
    assert total is None or 0 < total <= bounds.MAX_CHECKPOINT_BYTES


def test_valid_index_total_size_still_reads(tmp_path: Path) -> None:
    index = {"metadata": {"total_size": 6_425_499_648}, "weight_map": {"w": "model-00001-of-00002.safetensors"}}
    folder = model_dir(tmp_path, LLAMA, files={"model.safetensors.index.json": json.dumps(index).encode()})
    assert resolve_local(folder).spec.exact_weight_bytes == 6_425_499_648


# --- model references --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["~nosuchuser_xyz/model", "~/" + "a" * 6000, "org/" + "x" * 6000, "a\0b/c"])
@pytest.mark.parametrize("allow_local", [True, False])
def test_bad_reference_is_refused_before_the_file_system(ref: str, allow_local: bool) -> None:
    with pytest.raises(ModelNotFoundError):
        resolve_model(ref, offline=True, allow_local=allow_local)


def test_catalog_model_at_main_works_offline() -> None:
    resolved = resolve_model("meta-llama/Llama-3.1-8B@main", offline=True)
    assert resolved.source == "catalog" and resolved.spec.exact_num_params == 8_030_261_248
    assert "@main" in resolved.detail
    with pytest.raises(CalculatorError):  # another branch is not what the catalog holds
        resolve_model("meta-llama/Llama-3.1-8B@some-branch", offline=True)


# --- workload numbers --------------------------------------------------------------------------------


def test_trace_beyond_int64_elements_is_refused_before_tracing() -> None:
    spec = resolve_model("meta-llama/Llama-3.2-3B").spec
    # Eager scores: batch 100,000 x 24 heads x (10^7 tokens)^2 = 2.4e20 elements > 2^63 (9.2e18).
    w = Workload(context_length=10_000_000, batch_size=100_000)
    assert 100_000 * 24 * 10**14 > 2**63
    with pytest.raises(VerificationError, match="more than 2\\^63 elements"):
        run_verification(spec, w, level="trace")


# --- the CLI: exit 2, one line, bounded time and memory -------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["layers_1e9", "vocab_1e30", "nan", "architectures_5", "deep", "negative_shape", "index_list", "header_no_shape"],
)
def test_cli_hostile_local_folder(tmp_path: Path, case: str) -> None:
    config, raw, files = dict(LLAMA), None, {}
    if case == "layers_1e9":
        config["num_hidden_layers"] = 1_000_000_000
    elif case == "vocab_1e30":
        config["vocab_size"] = 1e30
    elif case == "nan":
        raw = json.dumps({**LLAMA, "hidden_size": math.nan}).encode()  # NaN as JSON writes it
    elif case == "architectures_5":
        config["architectures"] = 5
    elif case == "deep":
        raw = b'{"model_type": "llama", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    elif case == "negative_shape":
        files["model.safetensors"] = _header({"w": {"dtype": "BF16", "shape": [-1000, 4096], "data_offsets": [0, 0]}})
    elif case == "index_list":
        files["model.safetensors.index.json"] = b'[{"total_size": 1}]'
    elif case == "header_no_shape":
        files["model.safetensors"] = _header({"w": {"dtype": "BF16"}})
    folder = model_dir(tmp_path, config, raw=raw, files=files)

    run = run_cli("estimate", str(folder), "--json")

    assert_one_line_error(run)
    assert run.seconds < MAX_CLI_SECONDS
    assert run.peak_rss_bytes < MAX_CHILD_RSS_BYTES, run.peak_rss_bytes


@pytest.mark.parametrize(
    "args",
    [
        ("estimate", "meta-llama/Llama-3.2-3B", "--headroom", "1e300"),
        ("estimate", "~nosuchuser_xyz/model"),
        ("estimate", "org/" + "x" * 6000),
    ],
)
def test_cli_hostile_arguments(args: tuple[str, ...]) -> None:
    assert_one_line_error(run_cli(*args))


def test_cli_catalog_model_at_main_offline() -> None:
    run = run_cli("estimate", "meta-llama/Llama-3.2-3B@main", "--offline", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model_source"] == "catalog"


def test_readme_states_the_limits_in_force() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = " ".join(readme.split("### Limits on untrusted input")[1].split("\n## ")[0].split())
    for text in (f"**{bounds.HUB_DEADLINE_S:g} s**", f"{bounds.MAX_CONFIG_BYTES // 2**20} MiB", f"{bounds.MAX_CONFIG_DEPTH} levels",
                 f"{bounds.MAX_INDEX_BYTES // 2**20} MiB", f"{bounds.MAX_SHARDS:,} shards", f"layers {bounds.MAX_LAYERS.limit:,}",
                 f"hidden size {bounds.MAX_HIDDEN.limit:,}", f"vocabulary {bounds.MAX_VOCAB.limit:,}", f"experts {bounds.MAX_EXPERTS.limit:,}",
                 f"positions {bounds.MAX_POSITIONS.limit:,}", f"{bounds.MAX_MODEL_REF_CHARS:,} characters", "fingerprint"):
        assert text in section, text


def test_cli_transformers_inventory_path_stays_one_line(tmp_path: Path) -> None:
    # A model type without an analytic formula is read by transformers' config class, which logs the
    # whole config at ERROR ("Can't set head_dim with value -1 for FalconConfig {...}", 34 lines)
    # and warns about rope_scaling before our error; the CLI keeps that off stderr.
    config = {"model_type": "falcon", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000,
              "head_dim": -1, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    run = run_cli("estimate", str(model_dir(tmp_path, config)), "--offline")
    assert_one_line_error(run)


@pytest.mark.parametrize(
    ("config", "key"),
    [({"model_type": "bart", "encoder_layers": 10**6}, "encoder_layers"), ({"model_type": "bart", "decoder_layers": 1e9}, "decoder_layers"),
     ({"model_type": "distilbert", "n_layers": 10**7}, "n_layers"), ({"model_type": "whisper", "encoder_attention_heads": 10**6}, "encoder_attention_heads")],
)
def test_inventory_path_layer_counts_under_other_names_are_bounded(config: dict, key: str) -> None:
    # transformers builds every layer on the meta device: 3,000 tiny BART layers took ~2 minutes
    # here, so 10^6 would never answer. Refused before any constructor runs.
    with pytest.raises(MalformedConfigError, match=f"`{key}` = .* is above the largest value accepted"):
        model_spec_from_config("org/hostile", config)
