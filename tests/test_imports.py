"""`import calculator` (and its engine modules) must not pull in UI, torch or network libraries."""

import subprocess
import sys


def test_library_import_is_light():
    code = (
        "import sys, calculator, calculator.estimate, calculator.report, calculator.resolve, calculator.pricing, "
        "calculator.gpus, calculator.cli, calculator.hub, calculator.verify\n"
        "heavy = [m for m in ('streamlit', 'plotly', 'torch', 'transformers', 'huggingface_hub', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
