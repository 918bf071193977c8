"""Make the inventories shipped in calculator/data/inventories/ (the torch-free path, issue 9 part 4).

    python benchmarks/make_inventories.py            # ~1-3 min on 2 CPU cores (meta-device builds)
    python benchmarks/make_inventories.py --types phi mamba

An inventory is what `calculator.inventory.build_inventory` reads from transformers' own class
built on the meta device (every parameter group, ties, towers, peft's all-linear targets). Where
torch is not installed (Streamlit Community Cloud installs requirements.txt only), a config whose
`config_key` matches a shipped file is answered from it; any other architecture outside the
analytic families gets one line saying what to install.

Shipped: every bundled catalog config that the calculator counts from the inventory (none is,
today: every catalog model has an analytic formula that matches transformers), and the default
config (`AutoConfig.for_model(type)`, transformers 5.24) of each architecture below that people
load from the Hub and the analytic formulas do not cover, or cover without their vision tower.
The index records the transformers and peft versions each was counted with; with other versions
installed the shipped file is not used (the installed classes are built instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from make_profiles import HUB_TYPES, default_config  # noqa: E402

from calculator.catalog import catalog_config, catalog_entries  # noqa: E402
from calculator.inventory import build_inventory, config_key  # noqa: E402

OUT = ROOT / "calculator" / "data" / "inventories"
def _configs(types: list[str], catalog: bool) -> list[tuple[str, dict]]:
    from calculator.spec import model_spec_from_config

    out: list[tuple[str, dict]] = []
    if catalog:
        for entry in sorted(catalog_entries().values(), key=lambda e: e.model_id):
            cfg = catalog_config(entry)
            if model_spec_from_config(entry.model_id, cfg).counted_by == "inventory":
                out.append((entry.model_id, cfg))
    out.extend(default_config(mt) for mt in types)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="*", default=list(HUB_TYPES))
    parser.add_argument("--no-catalog", action="store_true")
    args = parser.parse_args()
    index_path = OUT / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    entries: dict[str, dict] = dict(index.get("inventories", {}))
    defaults: dict[str, dict] = dict(index.get("defaults", {}))
    for name, cfg in _configs(args.types, not args.no_catalog):
        key = config_key(cfg)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inv = build_inventory(cfg, model_id=name)
        except Exception as e:  # one architecture that does not build is a line, not the end of the run
            print(f"{name}: not shipped ({type(e).__name__}: {' '.join(str(e).split())[:160]})", flush=True)
            continue
        path = OUT / f"{key}.json"
        path.write_text(json.dumps(inv.to_json(), separators=(",", ":"), sort_keys=True) + "\n")
        if name.endswith("(transformers default)"):
            defaults[inv.model_type] = cfg
        entries[key] = {"file": path.name, "model_type": inv.model_type, "source": name,
                        "transformers": inv.transformers_version, "peft": inv.peft_version or ""}
        print(f"{name}: {inv.class_name}, {inv.num_params:,} parameters, {path.stat().st_size:,} B -> {path.name}", flush=True)
    index = {
        "_about": "Inventories shipped for the torch-free path: config_key -> file and the library versions it was counted with. "
                  "Made by `python benchmarks/make_inventories.py`; a config whose key is not here needs torch + transformers.",
        "inventories": dict(sorted(entries.items())),
        # transformers' default config of each shipped model type: a config.json holding only its
        # differences (what save_pretrained writes) is completed with these before it is keyed.
        "defaults": dict(sorted(defaults.items())),
    }
    index_path.write_text(json.dumps(index, separators=(",", ":"), sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.glob("*.json"))
    print(json.dumps({"shipped": len(entries), "bytes": total}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
