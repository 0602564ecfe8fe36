"""One table of bad inputs against the CLI: each gets exit code 2, one `dtkit: error:` line naming it, and leaves
nothing behind (a resumed run's last good checkpoint stays byte for byte as it was).

The CLI runs in-process on one tiny CartPole dataset and one tiny trained run, both made once for the module;
a case that damages files works on its own copy.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.cli import main
from dtkit.encoders import Encoder

TINY = ["--steps", "8", "--batch-size", "4", "--context-len", "4", "--log-every", "4", "--checkpoint-every", "4",
        "--eval-episodes", "1", "--eval-envs", "1", "--warmup-steps", "1", "--model.d-model", "16", "--model.n-layer", "1",
        "--no-progress"]
DATASET = "test/cartpole/bad-inputs-v0"


class WrongShape(Encoder):
    """Declares one token but returns a token one wider than d_model."""

    def __init__(self, field, d_model):
        super().__init__(field, d_model)
        self.n_tokens = 1
        self.proj = torch.nn.Linear(field.shape[0], d_model + 1)

    def forward(self, x):
        return self.proj(x.float()).unsqueeze(1)


class ThreeActions(gym.Wrapper):
    """CartPole's observations with Discrete(3) actions: the right observation shape, the wrong action space."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.action_space = gym.spaces.Discrete(3)

    def step(self, action):
        return self.env.step(int(action) % 2)


if "h8test/ThreeActions-v0" not in gym.registry:
    gym.register("h8test/ThreeActions-v0", entry_point=ThreeActions)


# ---------------------------------------------------------------------------------------------- fixtures
def _write(dataset_id: str, episodes: list[dict], env_id: str | None = "CartPole-v1", **spaces) -> None:
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    bufs = [EpisodeBuffer(id=i, observations=e["obs"], actions=e["act"], rewards=e["rew"], terminations=e["term"],
                          truncations=np.zeros(len(e["rew"]), bool), infos={}) for i, e in enumerate(episodes)]
    kw = {"env": env_id} if env_id else spaces
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, bufs, algorithm_name="random", author="tests", author_email="t@t",
                                           code_permalink="tests", description="tiny", data_format="hdf5",
                                           ref_min_score=0.0, ref_max_score=100.0, **kw)


def _episodes(n: int = 4, length: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"obs": rng.normal(0, 0.05, (length + 1, 4)).astype(np.float32), "act": rng.integers(0, 2, length),
             "rew": np.ones(length), "term": np.arange(length) == length - 1} for _ in range(n)]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A Minari root with the good dataset and damaged variants, plus one tiny trained run."""
    root = tmp_path_factory.mktemp("minari-bad-inputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        _write(DATASET, _episodes())
        eps = _episodes(seed=1)
        eps[1]["rew"] = eps[1]["rew"].copy()
        eps[1]["rew"][2] = np.nan
        _write("test/bad/nan-reward-v0", eps)
        eps = _episodes(seed=2)
        eps[2]["obs"][5, 1] = np.inf
        _write("test/bad/inf-obs-v0", eps)
        eps = _episodes(seed=3)
        _write("test/bad/discrete-start-v0", eps, env_id=None, observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
               action_space=gym.spaces.Discrete(2, start=1))
        for name, damage in {"bad-metadata": _bad_metadata, "no-metadata": _no_metadata, "truncated-hdf5": _truncated_hdf5,
                             "zeroed-hdf5": _zeroed_hdf5, "no-hdf5": _no_hdf5, "unmakeable-env": _unmakeable_env,
                             "other-env": _other_env}.items():
            target = root / "test" / "bad" / f"{name}-v0"
            shutil.copytree(root / DATASET, target)
            _rewrite_id(target, f"test/bad/{name}-v0")
            damage(target / "data")
        run = tmp_path_factory.mktemp("run") / "run"
        assert main(["train", "--dataset", DATASET, "--run-dir", str(run), *TINY]) == 0
    return root, run


def _rewrite_id(folder: Path, new_id: str) -> None:
    meta = folder / "data" / "metadata.json"
    d = json.loads(meta.read_text())
    d["dataset_id"] = new_id
    meta.write_text(json.dumps(d))


def _bad_metadata(data: Path) -> None:
    (data / "metadata.json").write_text("{not json")


def _no_metadata(data: Path) -> None:
    (data / "metadata.json").unlink()


def _truncated_hdf5(data: Path) -> None:
    f = data / "main_data.hdf5"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def _zeroed_hdf5(data: Path) -> None:
    f = data / "main_data.hdf5"
    f.write_bytes(bytes(f.stat().st_size))


def _no_hdf5(data: Path) -> None:
    (data / "main_data.hdf5").unlink()


def _set_env_spec(data: Path, **changes) -> None:
    meta = data / "metadata.json"
    d = json.loads(meta.read_text())
    spec = json.loads(d["env_spec"])
    spec.update(changes)
    d["env_spec"] = json.dumps(spec)
    meta.write_text(json.dumps(d))


def _unmakeable_env(data: Path) -> None:
    _set_env_spec(data, id="h8test/Gone-v0", entry_point="no_such_module_h8:GoneEnv")


def _other_env(data: Path) -> None:
    _set_env_spec(data, id="Acrobot-v1", entry_point="gymnasium.envs.classic_control.acrobot:AcrobotEnv")


@pytest.fixture(autouse=True)
def minari_root(shared, monkeypatch):
    """Overrides the suite's per-test Minari folder with the module's shared one."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(shared[0]))
    return shared[0]


# ---------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    args: list[str]
    words: list[str]
    prepare: Callable[[Path, Path], None] | None = None
    """prepare(run_copy, tmp): damage the run copy or make files the case needs, before the snapshot."""
    marks: list = field(default_factory=list)


def train(*extra: str) -> list[str]:
    return ["train", "--dataset", DATASET, *TINY, *extra]


def resume(*extra: str) -> list[str]:
    return ["train", "--dataset", DATASET, "--run-dir", "{run}", *TINY, "--resume", *extra]


def evaluate(*extra: str) -> list[str]:
    return ["eval", "--checkpoint", "{run}", "--episodes", "1", "--num-envs", "1", "--no-progress", *extra]


def _ckpts(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*"))


def _truncate_weights(run: Path, _: Path) -> None:
    for c in _ckpts(run):
        f = c / "model.safetensors"
        f.write_bytes(f.read_bytes()[:100])


def _zero_weights(run: Path, _: Path) -> None:
    for c in _ckpts(run):
        f = c / "model.safetensors"
        f.write_bytes(bytes(f.stat().st_size))


def _nan_weights(run: Path, _: Path) -> None:
    from safetensors.torch import load_file, save_file

    for c in _ckpts(run):
        w = load_file(str(c / "model.safetensors"))
        next(v for v in w.values() if v.is_floating_point()).fill_(float("nan"))
        save_file(w, str(c / "model.safetensors"))


def _drop_trainer(run: Path, _: Path) -> None:
    for c in _ckpts(run):
        (c / "trainer.pt").unlink()


def _bad_meta(run: Path, _: Path) -> None:
    for c in _ckpts(run):
        (c / "meta.json").write_text("{")


def _foreign_meta(run: Path, _: Path) -> None:
    for c in _ckpts(run):
        d = json.loads((c / "meta.json").read_text())
        d["format"] = "someone-else/3"
        (c / "meta.json").write_text(json.dumps(d))


def _a_file(run: Path, tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

CASES: dict[str, Case] = {
    # datasets
    "unknown-dataset": Case(["train", "--dataset", "nobody/nothing-v0", *TINY], ["unknown dataset id 'nobody/nothing-v0'"]),
    "nan-reward": Case(["train", "--dataset", "test/bad/nan-reward-v0", *TINY], ["reward", "episode 1, step 2", "not finite"]),
    "inf-observation": Case(["train", "--dataset", "test/bad/inf-obs-v0", *TINY], ["observation", "episode 2, step 5"]),
    "discrete-start": Case(["train", "--dataset", "test/bad/discrete-start-v0", *TINY], ["starts at 1"]),
    "invalid-metadata": Case(["train", "--dataset", "test/bad/bad-metadata-v0", *TINY], ["metadata.json", "not valid JSON"]),
    "missing-metadata": Case(["train", "--dataset", "test/bad/no-metadata-v0", *TINY], ["metadata.json", "missing"]),
    "truncated-hdf5": Case(["train", "--dataset", "test/bad/truncated-hdf5-v0", *TINY], ["truncated-hdf5-v0", "could not be read"]),
    "zeroed-hdf5": Case(["train", "--dataset", "test/bad/zeroed-hdf5-v0", *TINY], ["zeroed-hdf5-v0", "could not be read"]),
    "missing-hdf5": Case(["train", "--dataset", "test/bad/no-hdf5-v0", *TINY], ["no-hdf5-v0", "could not be read"]),
    "unmakeable-eval-env": Case(["train", "--dataset", "test/bad/unmakeable-env-v0", *TINY], ["h8test/Gone-v0", "cannot be made"]),
    "dataset-env-mismatch": Case(["train", "--dataset", "test/bad/other-env-v0", *TINY], ["Acrobot-v1", "shape (4,)"]),
    # training settings
    "grad-clip-negative": Case(train("--grad-clip", "-1"), ["--grad-clip=-1"]),
    "grad-clip-zero": Case(train("--grad-clip", "0"), ["--grad-clip=0"]),
    "d-model-zero": Case(train("--model.d-model", "0"), ["--model.d-model=0"]),
    "mlp-ratio-zero": Case(train("--model.mlp-ratio", "0"), ["--model.mlp-ratio=0"]),
    "weight-decay-negative": Case(train("--weight-decay", "-0.1"), ["--weight-decay=-0.1"]),
    "n-head-not-dividing": Case(train("--model.n-head", "3"), ["--model.n-head=3", "--model.d-model=16"]),
    "dropout-above-one": Case(train("--model.dropout", "1.5"), ["--model.dropout=1.5"]),
    "n-layer-zero": Case(train("--model.n-layer", "0"), ["--model.n-layer=0"]),
    "seed-negative": Case(train("--seed", "-1"), ["--seed=-1"]),
    "cuda-without-cuda": Case(train("--device", "cuda"), ["--device 'cuda'", "no CUDA"], marks=[NO_CUDA]),
    "device-unknown": Case(train("--device", "abacus"), ["--device 'abacus'"]),
    "context-len-huge": Case(train("--context-len", "100000"), ["--context-len=100000", "longest episode"]),
    "context-len-zero": Case(train("--context-len", "0"), ["--context-len=0"]),
    "encoder-params-alone": Case(train("--obs-encoder-params", '{"hidden": 8}'), ["--obs-encoder-params", "without --obs-encoder"]),
    "encoder-params-not-json": Case(train("--obs-encoder", "mlp", "--obs-encoder-params", "{hidden"), ["not valid JSON"]),
    "encoder-params-not-object": Case(train("--obs-encoder", "mlp", "--obs-encoder-params", "[1]"), ["must be a JSON object"]),
    "encoder-unknown": Case(train("--obs-encoder", "resnet9000"), ["unknown encoder 'resnet9000'"]),
    "encoder-wrong-shape": Case(train("--obs-encoder", f"{__name__}:WrongShape"), ["returned shape (2, 1, 17)", "expected (2, 1, 16)"]),
    "encoder-bad-class-path": Case(train("--obs-encoder", "no_such_pkg_h8.enc:Enc"), ["no_such_pkg_h8.enc:Enc", "could not be imported"]),
    "lr-zero": Case(train("--lr", "0"), ["--lr=0"]),
    "steps-zero": Case(train("--steps", "0"), ["--steps=0"]),
    "top-fraction-zero": Case(train("--top-fraction", "0"), ["--top-fraction=0"]),
    "target-return-nan": Case(train("--target-returns", "nan"), ["not finite"]),
    "threads-zero": Case(train("--threads", "0"), ["--threads=0"]),
    "return-scale-negative": Case(train("--return-scale", "-5"), ["--return-scale=-5"]),
    "run-dir-is-a-file": Case(train("--run-dir", "{tmp}/afile"), ["afile", "is a file"], prepare=_a_file),
    "env-module-missing": Case(train("--env-module", "no_such_envs_h8"), ["--env-module 'no_such_envs_h8'"]),
    # resume
    "resume-without-checkpoint": Case(["train", "--dataset", DATASET, "--run-dir", "{tmp}/fresh", *TINY, "--resume"],
                                      ["holds no checkpoint"]),
    "run-exists-without-resume": Case(["train", "--dataset", DATASET, "--run-dir", "{run}", *TINY], ["already holds checkpoints"]),
    "resume-other-context-len": Case(resume("--context-len", "8"), ["--context-len 4 (checkpoint) vs 8 (given)"]),
    "resume-other-return-token": Case(resume("--no-return-token"), ["--return-token True (checkpoint) vs False"]),
    "resume-other-encoder": Case(resume("--obs-encoder", "mlp"), ["--obs-encoder None (checkpoint) vs 'mlp'"]),
    "resume-other-key-encoder": Case(resume("--encoder", "obs=mlp"), ["--encoder [] (checkpoint) vs ['obs=mlp']"]),
    "resume-other-d-model": Case(resume("--model.d-model", "32"), ["--model.d-model 16 (checkpoint) vs 32"]),
    "resume-other-dataset": Case(["train", "--dataset", "test/bad/other-env-v0", "--run-dir", "{run}", *TINY, "--resume"],
                                 ["--dataset 'test/cartpole/bad-inputs-v0' (checkpoint) vs 'test/bad/other-env-v0'"]),
    "resume-without-trainer-state": Case(resume(), ["trainer.pt is missing"], prepare=_drop_trainer),
    "resume-damaged-weights": Case(resume(), ["model.safetensors", "truncated or damaged"], prepare=_truncate_weights),
    # checkpoints and evaluation
    "eval-missing-checkpoint": Case(["eval", "--checkpoint", "{tmp}/nothing"], ["no checkpoint found"]),
    "eval-truncated-weights": Case(evaluate(), ["model.safetensors", "truncated or damaged"], prepare=_truncate_weights),
    "eval-zeroed-weights": Case(evaluate(), ["model.safetensors", "truncated or damaged"], prepare=_zero_weights),
    "eval-nan-weights": Case(evaluate(), ["NaN or inf weights"], prepare=_nan_weights),
    "eval-invalid-meta": Case(evaluate(), ["meta.json", "could not be read"], prepare=_bad_meta),
    "eval-foreign-format": Case(evaluate(), ["someone-else/3"], prepare=_foreign_meta),
    "eval-other-observations": Case(evaluate("--env-id", "Acrobot-v1"), ["Acrobot-v1", "shape (4,)"]),
    "eval-other-actions": Case(evaluate("--env-id", "h8test/ThreeActions-v0"), ["h8test/ThreeActions-v0", "Discrete(3)"]),
    "eval-unregistered-env": Case(evaluate("--env-id", "nobody/Nothing-v0"), ["nobody/Nothing-v0", "not registered"]),
    "eval-env-module-syntax-missing": Case(evaluate("--env-id", "no_such_mod_h8:Foo-v0"), ["'no_such_mod_h8:Foo-v0'", "could not be imported"]),
    "eval-target-inf": Case(evaluate("--target-returns", "inf"), ["not finite"]),
    "eval-episodes-zero": Case(evaluate("--episodes", "0"), ["--episodes=0"]),
    "eval-num-envs-zero": Case(evaluate("--num-envs", "0"), ["--num-envs=0"]),
    "eval-cuda-without-cuda": Case(evaluate("--device", "cuda"), ["--device 'cuda'"], marks=[NO_CUDA]),
    "eval-threads-zero": Case(evaluate("--threads", "0"), ["--threads=0"]),
    "eval-keep-too-large": Case(evaluate("--keep", "99"), ["keep=99"]),
    "eval-out-under-a-file": Case(evaluate("--out", "{tmp}/afile/eval.json"), ["afile", "is a file"], prepare=_a_file),
    "eval-out-is-a-folder": Case(evaluate("--out", "{tmp}"), ["it is a folder"]),
    "demo-steps-zero": Case(["demo", "--steps", "0", "--no-progress"], ["--steps=0"]),
    "demo-bad-model": Case(["demo", "--train.model.n-head", "3", "--no-progress"], ["--model.n-head=3"]),
    # collection
    "build-unknown-env": Case(["datasets", "build", "cartpole", "--set", "env_id=Nothing-v0", "--no-progress"],
                              ["'Nothing-v0'"]),
    "build-bad-tier": Case(["datasets", "build", "cartpole", "--set", "tiers[0].episodes=0", "--no-progress"],
                           ["cartpole.toml", "`tiers[0].episodes` must be a positive integer"]),
    "build-zero-train-steps": Case(["datasets", "build", "cartpole", "--set", "train.steps=0", "--no-progress"],
                                   ["`train.steps`"]),
    "build-unknown-key": Case(["datasets", "build", "cartpole", "--set", "train.stepz=9", "--no-progress"],
                              ["`train.stepz` is not a known key", "did you mean `steps`"]),
    "build-unknown-recipe": Case(["datasets", "build", "nosuch", "--no-progress"], ["unknown recipe 'nosuch'"]),
    "collect-removed-flag": Case(["collect", "--env-id", "CartPole-v1", "--algo", "ppo"], ["--env-id", "--set env_id=VALUE"]),
    "datasets-info-unknown": Case(["datasets", "info", "nosuchrecipe"], ["nosuchrecipe"]),
}


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.exists() else []:
            st = p.stat()
            out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return out


@pytest.mark.parametrize("name", [pytest.param(k, marks=c.marks) for k, c in CASES.items()])
def test_bad_input(name, shared, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    root, run = shared
    monkeypatch.chdir(tmp_path)  # a default run folder would land here, where the snapshot sees it
    run_copy = tmp_path / "run"
    shutil.copytree(run, run_copy)
    if case.prepare is not None:
        case.prepare(run_copy, tmp_path)
    args = [a.replace("{run}", str(run_copy)).replace("{tmp}", str(tmp_path)) for a in case.args]
    before = _snapshot(tmp_path, root)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dtkit: error:"), err
    for word in case.words:
        assert word in err[0], (word, err[0])
    assert _snapshot(tmp_path, root) == before, "a rejected command left files behind or changed them"


def test_the_table_is_large_and_spread():
    groups = {"train": 0, "eval": 0, "collect": 0, "datasets": 0, "demo": 0}
    for c in CASES.values():
        groups[c.args[0]] += 1
    assert len(CASES) >= 40 and all(groups.values()), groups
