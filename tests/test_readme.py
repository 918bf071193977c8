"""README's first two commands are the contract for a fresh machine; .ci/run runs the second."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_starts_with_two_commands():
    commands = readme_commands()
    assert commands[0] == "pip install -r requirements.txt && streamlit run app.py"
    assert "pip install -r requirements-dev.txt" in commands[1] and "pytest" in commands[1]
    head = (ROOT / "README.md").read_text().split("```bash")[0]
    assert head.strip().startswith("# ") and head.count("\n") <= 3


def test_ci_runs_the_readme_test_command():
    script = ROOT / ".ci" / "run"
    extracted = subprocess.run(["awk", r"/^```bash$/{n++; next} /^```$/{next} n==2 {print; exit}", str(ROOT / "README.md")],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == readme_commands()[1]
    assert "README.md" in script.read_text()


def test_app_requirements_are_cloud_light():
    reqs = (ROOT / "requirements.txt").read_text()
    for heavy in ("torch", "transformers", "peft"):
        assert not re.search(rf"^{heavy}\b", reqs, flags=re.M)


def test_readme_quotes_the_committed_validation_figures():
    # The accuracy section repeats benchmarks/results/validation.md's headline and per-mode table; a
    # rerun that changes them must change the README too (both were stale once).
    readme = (ROOT / "README.md").read_text()
    report = (ROOT / "benchmarks" / "results" / "validation.md").read_text()
    headline = next(line for line in report.splitlines() if line.startswith("Scored rows:"))
    table = re.search(r"\| mode \| rows \| median abs error \| worst \|\n(?:\|.*\|\n)+", report).group(0)
    assert headline in readme
    assert table in readme
