"""The torch-free path (issue 9 part 4): what ships in calculator/data/inventories/ and profiles/.

Streamlit Community Cloud installs requirements.txt only (no torch). There, an architecture outside
the analytic families is answered from an inventory (and trace profile) shipped for exactly its
config, and any other gets one line saying what to install. The subprocess tests block torch,
transformers and peft (`sys.modules[name] = None`: `import` raises and `importlib.util.find_spec`
answers None, as on an install without them) and run the CLI on a local config.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from calculator import inventory
from calculator.inventory import INVENTORY_PACKAGE, config_key, shipped_inventory

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ROOT / "calculator" / "data" / "inventories"
_BLOCKED_CLI = (
    "import sys\n"
    "for name in ('torch', 'transformers', 'peft'):\n"
    "    sys.modules[name] = None\n"
    "from calculator.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "assert not [m for m in ('torch', 'transformers', 'peft') if sys.modules.get(m) is not None]\n"
    "sys.exit(code)\n"
)


def _default_config(model_type: str) -> dict:
    pytest.importorskip("transformers")
    from transformers import AutoConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoConfig.for_model(model_type).to_dict()


def _run_without_torch(config: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-c", _BLOCKED_CLI, "estimate", str(folder), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _index() -> dict[str, dict[str, str]]:
    return json.loads((INVENTORIES / "index.json").read_text())["inventories"]


def test_without_torch_a_shipped_architecture_is_answered_from_its_shipped_inventory_and_profile(tmp_path: Path) -> None:
    cfg = _default_config("phi")
    entry = _index()[config_key(cfg)]
    shipped = json.loads((INVENTORIES / entry["file"]).read_text())
    out = _run_without_torch(cfg, tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # The parameters are the shipped meta-device count (transformers 5.24's PhiForCausalLM: 1,418,270,720).
    assert data["params"] == shipped["num_params"] == 1_418_270_720
    assert data["params_source"] == "inventory"
    assert data["counted_from"] == "transformers inventory (shipped) + trace profile (shipped)"
    notes = " ".join(data["notes"])
    assert f"Counted from the inventory shipped with the calculator (calculator/data/inventories/{entry['file']}" in notes
    assert "from a trace profile shipped with the calculator (calculator/data/profiles/" in notes
    # The config.json save_pretrained writes holds only the keys that differ from PhiConfig()'s
    # defaults; completed with the shipped defaults it is the same model and finds the same files.
    from transformers import PhiConfig

    diff_only = json.loads(PhiConfig().to_json_string(use_diff=True))
    assert len(diff_only) < len(cfg)
    text = _run_without_torch(diff_only, tmp_path / "text")
    assert "counted from: transformers inventory (shipped) + trace profile (shipped)" in text.stdout
    assert "(1.42B parameters, inventory)" in text.stdout


def test_without_torch_an_unshipped_architecture_gets_one_line_saying_how_to_enable_it(tmp_path: Path) -> None:
    cfg = {**_default_config("phi"), "num_hidden_layers": 7}  # one key differs: no shipped answer may be reused
    assert config_key(cfg) not in _index()
    out = _run_without_torch(cfg, tmp_path)
    assert out.returncode != 0
    message = out.stderr.strip()
    assert "\n" not in message and message.startswith("error: ")
    assert "'phi'" in message and "needs torch + transformers" in message
    assert "pip install -r requirements-dev.txt" in message and "requirements.txt" in message.split("requirements-dev.txt")[1]


def test_the_shipped_answer_is_what_transformers_builds_now() -> None:
    """Each shipped file equals a fresh build (regenerate with benchmarks/make_inventories.py),
    checked on a dense decoder, an SSM and a vision-language model; the rest by key."""
    pytest.importorskip("torch")
    import transformers

    index = _index()
    for mt in ("phi", "mamba", "llava"):
        cfg = _default_config(mt)
        entry = index[config_key(cfg)]
        assert entry["transformers"] == transformers.__version__
        built = inventory.build_inventory(cfg, model_id=mt).to_json()
        shipped = json.loads((INVENTORIES / entry["file"]).read_text())
        assert inventory.ModelInventory.from_json(shipped).to_json() == built
    types = {e["model_type"] for e in index.values()}
    # benchmarks/make_inventories.py ships the list make_profiles.py keeps (HUB_TYPES).
    source = (ROOT / "benchmarks" / "make_profiles.py").read_text()
    listed = source[source.index("HUB_TYPES = (") : source.index(")", source.index("HUB_TYPES = ("))]
    TYPES = {t.strip().strip('"') for t in listed.removeprefix("HUB_TYPES = (").replace("\n", " ").split(",") if t.strip()}

    # Every listed architecture ships except those whose transformers default does not build
    # (nemotron: head_dim None; dbrx: DbrxAttentionConfig has no rope_parameters).
    assert set(TYPES) - types == {"nemotron", "dbrx"}


def test_shipped_inventories_stay_small() -> None:
    files = list(INVENTORIES.glob("*.json"))
    assert len(files) > 30
    assert sum(f.stat().st_size for f in files) < 300_000
    assert all("\n" not in f.read_text().rstrip("\n") for f in files)  # compact JSON
    profiles = list((ROOT / "calculator" / "data" / "profiles").glob("*.json"))
    # A training profile made at shortened points carries the backward's pieces (LM head, layers, input
    # embedding) and their refit at a larger batch: 19 of 64 files, 514 KB in all after their remake.
    assert sum(f.stat().st_size for f in profiles) < 700_000
    assert all("\n" not in f.read_text().rstrip("\n") for f in profiles)


def test_a_shipped_inventory_is_not_used_with_another_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _default_config("mamba")
    assert shipped_inventory(cfg) is not None
    assert shipped_inventory(cfg).source.startswith("calculator/data/inventories/")
    monkeypatch.setattr(inventory, "transformers_available", lambda: True)
    real = inventory._installed_version
    monkeypatch.setattr(inventory, "_installed_version", lambda name: "9.9.9" if name == "transformers" else real(name))
    assert shipped_inventory(cfg) is None  # built from the installed classes instead
    monkeypatch.setattr(inventory, "transformers_available", lambda: False)
    assert shipped_inventory(cfg) is not None  # without torch the shipped answer stands
    assert INVENTORY_PACKAGE == "calculator.data.inventories"


def test_every_shipped_default_is_found_from_the_config_json_transformers_writes() -> None:
    """save_pretrained writes the keys that differ from the class defaults (`to_json_string(use_diff=True)`),
    with non-finite floats tagged ({"__float__": "Infinity"}: Mamba2's time_step_limit); the full
    file and the in-memory dict name the same model. All three find the shipped inventory."""
    pytest.importorskip("transformers")
    from transformers import AutoConfig

    index = _index()
    for mt in sorted({e["model_type"] for e in index.values()}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = AutoConfig.for_model(mt)
        for form in (json.loads(cfg.to_json_string(use_diff=True)), json.loads(cfg.to_json_string(use_diff=False)), cfg.to_dict()):
            assert config_key(form) in index, mt
