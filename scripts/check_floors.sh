#!/usr/bin/env bash
# Check that the oldest versions pyproject.toml allows really work: build a fresh venv, install every
# dependency at its declared floor (name>=X becomes name==X), install dtkit on top without upgrading
# anything, then run a short train -> eval path and the evaluation tests.
#
# Usage: scripts/check_floors.sh [VENV_DIR]        (default: a temporary folder, removed afterwards)
# TORCH_SPEC overrides the torch requirement. By default the floor (torch==2.4.0) is used; set
# TORCH_SPEC="torch==2.13.0" where only a local CPU wheel is at hand (say so when you report).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$(mktemp -d)/venv}"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
floors="$(python3 - "$repo/pyproject.toml" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for d in deps:
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*>=\s*([^,;\s]+)", d.strip())
    if not m:
        sys.exit(f"check_floors: cannot read a floor from {d!r}; write dependencies as name>=X")
    print(f"{m.group(1)}=={m.group(2)}")
PY
)"
torch_spec="${TORCH_SPEC:-$(grep '^torch==' <<<"$floors")}"
echo "floors: $(tr '\n' ' ' <<<"$floors") (torch as: $torch_spec)"
pip install -q "$torch_spec"
pip install -q $(grep -v '^torch==' <<<"$floors") "pytest>=8"
pip install -q --no-deps -e "$repo"
pip check || true  # reported, not fatal: pip check also flags extras' own unrelated pins
pip list 2>/dev/null | grep -iE '^(torch|gymnasium|minari|stable.baselines3|einops|tensorboard|tqdm|safetensors|tyro|numpy) '
cd "$repo"
OMP_NUM_THREADS=1 python -m pytest -q -p no:cacheprovider tests/test_cli.py::test_train_then_eval \
    tests/test_cli.py::test_collect_then_train tests/rollout/test_evaluate.py tests/rollout/test_env_sources.py \
    tests/trainer/test_checkpoints.py
echo "check_floors: OK"
