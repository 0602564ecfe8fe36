"""The README's Python blocks run as written, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["ret"] > 0 and namespace["result"].checkpoint.is_dir()
    assert namespace["mean"] > 0


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(python3 -m pip install torch==2\.13\.0 [^\n]*)\n```", README)
    assert len(commands) == 2, "the README gives exactly two fresh-machine commands"
    demo, tests = commands
    assert demo.endswith("dtkit demo") and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()
