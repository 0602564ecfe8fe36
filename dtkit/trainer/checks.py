"""Guards that keep a run from training the wrong thing in silence.

Each check raises a :class:`~dtkit.errors.DtkitError` whose one line names the
setting (as its CLI flag), the value and the fix. They run before any file is
written, except :class:`FiniteLossWatch`, which runs inside the loop.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from dtkit.encoders.choice import json_object
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer
from dtkit.trainer.config import SAVED_BEFORE_THE_CHOICE

__all__ = ["RESUME_FLAGS", "FiniteLossWatch", "check_context_len", "check_device", "check_encoder_outputs", "check_json_params",
           "check_resume_flags", "check_settings", "encoder_params", "set_threads"]

# Settings that shape the model or the data it sees: a resumed run must use the saved values.
RESUME_FLAGS = ("dataset", "context_len", "return_token", "reward_token", "block_obs_attention", "obs_encoder",
                "obs_encoder_params", "encoder", "encoder_params", "obs_order", "return_scale", "top_fraction", "windows")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_settings(cfg: Any) -> None:
    """Field-by-field checks of a resolved :class:`TrainConfig` that need no data (model size, optimiser, seed, ...)."""
    m = cfg.model
    if not (math.isfinite(cfg.grad_clip) and cfg.grad_clip > 0):
        raise DtkitError(f"--grad-clip={cfg.grad_clip} is invalid; use a positive gradient-norm bound such as 0.25 "
                         "(a negative bound flips the update, zero never learns)")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise DtkitError(f"--weight-decay={cfg.weight_decay} is invalid; use a finite value >= 0 such as 1e-4")
    if cfg.seed < 0 or cfg.seed >= 2**31:
        raise DtkitError(f"--seed={cfg.seed} is invalid; use an integer in [0, 2**31)")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise DtkitError(f"--warmup-steps={cfg.warmup_steps} is invalid; use 0 or more steps")
    if cfg.eval_every < 0:
        raise DtkitError(f"--eval-every={cfg.eval_every} is invalid; use 0 (only at the end) or a positive step count")
    if cfg.return_scale is not None and not (math.isfinite(cfg.return_scale) and cfg.return_scale > 0):
        raise DtkitError(f"--return-scale={cfg.return_scale} is invalid; use a positive number (or leave it unset)")
    if getattr(cfg, "threads", None) is not None and cfg.threads < 1:
        raise DtkitError(f"--threads={cfg.threads} is invalid; use a positive number of torch threads")
    for name in ("d_model", "n_layer", "n_head", "mlp_ratio"):
        if getattr(m, name) < 1:
            raise DtkitError(f"--model.{name.replace('_', '-')}={getattr(m, name)} is invalid; use a positive integer")
    if m.d_model % m.n_head:
        raise DtkitError(f"--model.n-head={m.n_head} does not divide --model.d-model={m.d_model}; "
                         "choose a head count that divides the width (e.g. 1, 2 or 4 for 128)")
    if not 0.0 <= m.dropout < 1.0:
        raise DtkitError(f"--model.dropout={m.dropout} is invalid; use a probability in [0, 1), e.g. 0.1")
    if cfg.obs_encoder is None and cfg.obs_encoder_params.strip() not in ("", "{}"):
        raise DtkitError(f"--obs-encoder-params {cfg.obs_encoder_params!r} was given without --obs-encoder, so it would be "
                         "ignored; add --obs-encoder NAME (e.g. mlp) or drop the params")
    if cfg.obs_encoder is not None:
        encoder_params(cfg.obs_encoder_params)
    check_device(cfg.device)


def encoder_params(text: str) -> dict[str, Any]:
    """``--obs-encoder-params`` as a dict, or a clear error."""
    return json_object(text, "--obs-encoder-params", "'{\"hidden\": 256}'")


def check_json_params(key: str, params: dict[str, Any]) -> None:
    """Encoder params are saved in every checkpoint's meta.json: refuse, up front, what JSON cannot hold."""
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DtkitError(f"encoder params for observation key {key!r} are not JSON-serialisable ({exc}); "
                         "use numbers, strings, lists and dicts, which a checkpoint can record") from None


def check_device(device: str) -> None:
    """'auto', 'cpu' or 'cuda[:N]' that exists on this machine."""
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DtkitError(f"--device {device!r} is not a device; use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DtkitError(f"--device {device!r} was asked for but this torch sees no CUDA device; use --device cpu "
                             "(or 'auto'), or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DtkitError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                             "pick an index below that")
    elif dev.type != "cpu":
        raise DtkitError(f"--device {device!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'")


def check_context_len(context_len: int, longest: int, dataset: str) -> None:
    """K beyond the longest episode the model can ever see only pads (and can allocate gigabytes before failing)."""
    if context_len > longest:
        raise DtkitError(f"--context-len={context_len} exceeds the longest episode of dataset {dataset!r} "
                         f"({longest} steps, or the env's time limit); use K <= {longest} (the original DT uses K=20)")


def check_resume_flags(saved: dict[str, Any], cfg: Any, where: str) -> None:
    """A resumed run must be the same run: refuse model- and data-shaping flags that differ from the checkpoint's."""
    now = cfg.to_dict()
    saved = {**SAVED_BEFORE_THE_CHOICE, **saved}
    diffs = [f"{_flag(k)} {_norm(saved.get(k))!r} (checkpoint) vs {_norm(now.get(k))!r} (given)"
             for k in RESUME_FLAGS if k in saved and _norm(saved.get(k)) != _norm(now.get(k))]
    saved_model, now_model = saved.get("model", {}), now["model"]
    diffs += [f"--model.{k.replace('_', '-')} {saved_model.get(k)!r} (checkpoint) vs {now_model.get(k)!r} (given)"
              for k in now_model if k in saved_model and saved_model[k] != now_model[k]]
    if diffs:
        raise DtkitError(f"--resume: {where} was trained with different settings: {'; '.join(diffs)}; "
                         "resume with the checkpoint's values or start a new --run-dir")


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def check_encoder_outputs(model: DecisionTransformer) -> None:
    """Run every observation encoder once on a zero input: a wrong output shape is named here, not deep in torch.cat."""
    spec, D = model.spec, model.cfg.d_model
    dev = next(model.parameters()).device
    with torch.no_grad():
        for f in spec.obs:
            enc = model.encoders[f"obs/{f.key}"]
            dtype = torch.from_numpy(np.zeros(0, dtype=f.info.dtype)).dtype
            x = torch.zeros(2, *f.info.shape, dtype=dtype, device=dev)
            was_training = enc.training
            enc.eval()
            try:
                y = enc(x)
            except Exception as exc:  # a user encoder failing on a well-formed input: name it and what it got
                raise DtkitError(f"encoder {f.encoder.type!r} for observation {f.key!r} failed on a zero input of shape "
                                 f"{tuple(x.shape)} ({type(exc).__name__}: {exc}); it must map (N, *{tuple(f.info.shape)}) "
                                 f"to (N, n_tokens, d_model)") from None
            finally:
                enc.train(was_training)
            want = (2, f.n_tokens, D)
            if tuple(y.shape) != want:
                raise DtkitError(f"encoder {f.encoder.type!r} for observation {f.key!r} returned shape {tuple(y.shape)} "
                                 "for a batch "
                                 f"of 2, expected {want} = (N, n_tokens, d_model); fix its forward or its n_tokens")


class FiniteLossWatch:
    """Remembers the first step whose loss was NaN or inf, without a host sync per step on GPU.

    The flag lives on the device; :meth:`check` reads it back only at log,
    checkpoint and end-of-run boundaries (and every step on CPU, where a read is free).
    """

    def __init__(self, device: torch.device, distributed: bool = False) -> None:
        self.device = device
        # Under DDP every rank must stop at the same boundary (a lone rank raising would hang the others).
        self.eager = device.type == "cpu" and not distributed
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.last_good: Any = None
        """The newest checkpoint written (set by the loop), named in the error."""

    def update(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)
        if self.eager:
            self.check()

    def check(self, *, reduce: Any = None) -> None:
        """Raise if any step so far had a non-finite loss; ``reduce`` combines ranks (all ranks must call it)."""
        flag = self.first_bad
        if reduce is not None:
            flag = reduce(flag)
        step = int(flag)
        if step >= 0:
            where = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
            raise DtkitError(f"the training loss became NaN or inf at step {step}; the run stopped and saved nothing after it "
                             f"({where}). Check the dataset for extreme values, lower --lr, raise --warmup-steps, "
                             "or try --amp fp32")


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads (every speed figure depends on it; a busy machine wants few)."""
    if threads is not None:
        if threads < 1:
            raise DtkitError(f"--threads={threads} is invalid; use a positive number of torch threads")
        torch.set_num_threads(threads)
