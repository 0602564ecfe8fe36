"""The stateful inference API: ``reset``, ``act``, ``record``, and SB3's ``predict``.

Exact KV caching (DESIGN invariant 1). Evicting the oldest step from a cache is
not exact: keys at layer 2 and deeper were computed while attending to steps a
recompute would no longer see. dtkit never evicts. Each environment's cache
grows from ``keep + 1`` to K steps; when it is full, the last ``keep`` steps are
recomputed from scratch (one batched forward pass) and the cache grows again.
The context at every step is therefore a contiguous window of between
``keep + 1`` and K steps, each exactly what a fresh forward pass over that
window gives, and every such window is one the model saw in training (a window
of K trains every shorter prefix through the causal mask). The recompute costs
``keep`` steps of trunk work once every ``K - keep`` steps; the observation
encoders' outputs are kept per step, so a rebuild never re-runs an encoder.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch

from dtkit.batch import Batch
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer

__all__ = ["DTPolicy"]


class DTPolicy:
    """Acts in ``num_envs`` environments at once with one batched forward pass per step.

    Args:
        model: a trained :class:`DecisionTransformer` (put in eval mode here).
        num_envs: how many environments the policy drives.
        target_return: the return to condition on, in env units (undivided).
        use_cache: exact KV caching (default) or a full recompute over the last K steps each step.
        keep: steps kept when a full cache is rebuilt (default K // 2).
        deterministic: argmax for Discrete actions, else sample.
        cuda_graph: on a CUDA device, replay the cached step as one CUDA graph (captured here, for this
            num_envs) instead of launching its kernels one by one; same actions (tested under ``-m gpu``).
        clamp_return_to_go: feed the model the return-to-go clamped to the training data's range
            (``spec.return_to_go_range``; nothing to clamp to in checkpoints saved before it was recorded).
            The episode's own account (target minus rewards so far) is kept unclamped.

    Example:
        >>> policy = DTPolicy(model, num_envs=1, target_return=500.0)  # doctest: +SKIP
        >>> policy.reset(); action = policy.act(obs[None])  # doctest: +SKIP
        >>> obs, reward, *_ = env.step(action[0]); policy.record(np.array([reward]))  # doctest: +SKIP
    """

    def __init__(self, model: DecisionTransformer, num_envs: int = 1, target_return: float = 0.0, *,
                 use_cache: bool = True, keep: int | None = None, deterministic: bool = True,
                 device: str | torch.device | None = None, cuda_graph: bool = False,
                 clamp_return_to_go: bool = True) -> None:
        if num_envs < 1:
            raise DtkitError(f"num_envs={num_envs} is invalid; use at least 1 environment")
        self.model = model.eval()
        self.spec = model.spec
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.num_envs, self.use_cache, self.deterministic = num_envs, use_cache, deterministic
        K = self.spec.context_len
        if keep is not None and not 0 <= keep < K:
            raise DtkitError(f"keep={keep} is invalid; use 0 <= keep < K={K} (steps kept when the cache is rebuilt)")
        self.keep = K // 2 if keep is None else keep
        self.return_to_go_bounds = self.spec.return_to_go_range if clamp_return_to_go else None
        self.set_target_return(target_return)
        N, dev, a = num_envs, self.device, self.spec.action
        # Ring buffers of the last K steps: step t lives in slot t % K.
        self._obs = {f.key: torch.zeros(N, K, *f.info.shape, dtype=_torch_dtype(f.info.dtype), device=dev) for f in self.spec.obs}
        self._ret = torch.zeros(N, K, device=dev)
        self._act = torch.zeros(N, K, dtype=torch.long, device=dev) if a.discrete else torch.zeros(N, K, a.dim, device=dev)
        self._rew = torch.zeros(N, K, device=dev)
        self._t = torch.zeros(N, dtype=torch.long, device=dev)
        self._rtg = torch.zeros(N, dtype=torch.float64, device=dev)
        self._n_ctx = torch.zeros(N, dtype=torch.long, device=dev)  # steps in each row's context
        self._prev_valid = torch.zeros(N, dtype=torch.bool, device=dev)
        self._unrecorded = np.zeros(N, dtype=bool)  # acted, reward not yet recorded (checked by predict)
        self._rows = torch.arange(N, device=dev)
        self._row_base = self._rows * K  # row r's slot s is element r * K + s of a buffer viewed as (N * K, ...)
        self.cache = model.new_cache(N, dev) if use_cache else None
        # Encoder outputs of the last K steps, so a cache rebuild re-runs the trunk but never an encoder (a CNN).
        D = model.cfg.d_model
        self._obs_tok = {f.key: torch.zeros(N, K, f.n_tokens, D, device=dev) for f in self.spec.obs} if use_cache else {}
        self.cuda_graph = cuda_graph
        self._graph = self._capture() if cuda_graph else None
        self.reset()

    def _capture(self) -> Any:
        if self.device.type != "cuda" or self.cache is None:
            raise DtkitError(f"cuda_graph=True needs the KV cache on a CUDA device (device={self.device}, "
                             f"use_cache={self.use_cache}); drop cuda_graph or use device='cuda' with the cache")
        if self.model._maskable:  # the presence mask indexes slots with a host list, which a graph capture cannot copy
            raise DtkitError("cuda_graph=True does not support fields that can be absent (a presence mask) yet; "
                             "drop cuda_graph for this model")
        from dtkit.model.graphs import GraphedStep

        first = {k: v[:, 0].clone() for k, v in self._obs.items()}
        example = ({"action": self._act[:, 0].clone(), "reward": self._rew[:, 0].clone()}, self._t.clone(),
                   self._prev_valid.clone(), {"return": self._ret[:, 0].clone(), "obs": first}, self._t.clone(),
                   {k: v[:, 0].clone() for k, v in self._obs_tok.items()})
        return GraphedStep(self.model, self.cache, example)

    def set_target_return(self, target_return: float) -> None:
        """Condition on a new target (takes effect at the next :meth:`reset`)."""
        if not math.isfinite(float(target_return)):
            raise DtkitError(f"target return {target_return!r} is not finite; pass a finite number such as the best return in the dataset")
        self.target_return = float(target_return)

    # ------------------------------------------------------------------ state
    def reset(self, rows: np.ndarray | torch.Tensor | None = None) -> None:
        """Start new episodes in ``rows`` (bool mask or indices; all when None)."""
        sel = self._rows if rows is None else self._as_rows(rows)
        if sel.dtype == torch.bool:
            sel = sel.nonzero().flatten()
        if sel.numel() == 0:
            return
        self._t[sel] = 0
        self._unrecorded[sel.cpu().numpy()] = False
        self._rtg[sel] = self.target_return
        self._n_ctx[sel] = 0
        self._prev_valid[sel] = False
        if self.cache is not None:
            self.cache.reset(sel)

    def record(self, rewards: np.ndarray | torch.Tensor, rows: np.ndarray | torch.Tensor | None = None) -> None:
        """Tell the policy the rewards for the actions it just took; advances the episode clock."""
        r = torch.as_tensor(np.asarray(rewards, dtype=np.float64), device=self.device).reshape(-1)
        if rows is None:  # every row: whole-buffer ops, no gathers (the per-step path of evaluate)
            _put(self._rew, self._flat(self._t), r.float())
            # Same quantity as the sampler's: (target - rewards received before t) / scale.
            self._rtg -= r
            self._t += 1
            self._unrecorded[:] = False
        else:
            sel = self._as_rows(rows).reshape(-1)
            slot = self._t[sel] % self.spec.context_len
            self._rew[sel, slot] = r.float()
            self._rtg[sel] -= r
            self._t[sel] += 1
            self._unrecorded[sel.cpu().numpy()] = False

    def _flat(self, steps: torch.Tensor) -> torch.Tensor:
        """(N,) index of each row's step ``steps`` in a ring buffer viewed as (N * K, ...)."""
        return self._row_base + steps % self.spec.context_len

    def _as_rows(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = rows if isinstance(rows, torch.Tensor) else torch.as_tensor(np.asarray(rows))
        return t.to(self.device)

    @property
    def context_lengths(self) -> np.ndarray:
        """Steps each row attended over at its last :meth:`act` (for tests and diagnostics)."""
        return self._n_ctx.cpu().numpy()

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Actions for a batch of observations, (num_envs, ...) -> (num_envs, ...) in env units."""
        here = self._flat(self._t)  # (N,) each row's slot for step t, in the flattened ring buffers
        obs_t = self._obs_tensors(obs)
        for k, v in obs_t.items():
            _put(self._obs[k], here, v)
        # Behind its target on a task whose rewards are <= 0, an agent's return-to-go climbs past 0,
        # which no training window shows; the clamp keeps the model within what it learned.
        rtg = self._rtg if self.return_to_go_bounds is None else self._rtg.clamp(*self.return_to_go_bounds)
        ret = (rtg / self.spec.return_scale).float()
        _put(self._ret, here, ret)
        pred = self._act_cached(obs_t, ret, here) if self.cache is not None else self._act_recompute()
        self.last_output = pred  # (N, A) head outputs, kept for diagnostics and tests
        action = self.model.head.act(pred, self.deterministic)
        _put(self._act, here, action)
        out = action.cpu().numpy()
        self._unrecorded[:] = True
        return out if self.spec.action.discrete else self.spec.action.from_unit(out)

    def _act_cached(self, obs_t: dict[str, torch.Tensor], ret: torch.Tensor, here: torch.Tensor) -> torch.Tensor:
        K, t = self.spec.context_len, self._t
        full = self._n_ctx >= K
        if bool(full.any()):
            self._rebuild(full.nonzero().flatten())
        assert self.cache is not None
        before = self._flat(t - 1)
        prev = {"action": _take(self._act, before), "reward": _take(self._rew, before)}
        tokens = {k: v[:, 0] for k, v in self.model.encode_obs({k: x[:, None] for k, x in obs_t.items()}).items()}  # key -> (N, n, D)
        for k, v in tokens.items():
            _put(self._obs_tok[k], here, v.to(self._obs_tok[k].dtype))
        step = self._graph if self._graph is not None else partial(self.model.step, self.cache)
        pred = step(prev, (t - 1).clamp_min(0), self._prev_valid, {"return": ret, "obs": obs_t}, t, obs_tokens=tokens)
        self._n_ctx += 1
        self._prev_valid[:] = True
        return pred

    def _rebuild(self, rows: torch.Tensor) -> None:
        """Recompute the last ``keep`` whole steps of ``rows`` from scratch into their cache."""
        assert self.cache is not None
        self.cache.reset(rows)
        self._prev_valid[rows] = False
        self._n_ctx[rows] = self.keep
        if self.keep == 0:
            return
        steps = self._t[rows, None] - self.keep + torch.arange(self.keep, device=self.device)  # (R, keep)
        tokens = {k: v[rows[:, None], steps % self.spec.context_len] for k, v in self._obs_tok.items()}  # key -> (R, keep, n, D)
        window = self._window(rows, steps)
        _, kvs = self.model(window, kv_only=True, obs_tokens=tokens)
        self.cache.load(rows, kvs, self.model.token_valid(window))  # absent fields stay hidden after a rebuild
        self._prev_valid[rows] = False  # step t-1's action is inside the rebuilt window

    def _act_recompute(self) -> torch.Tensor:
        """Classic DT evaluation: a forward pass over the last min(t + 1, K) steps."""
        K, t = self.spec.context_len, self._t
        n = torch.minimum(t + 1, torch.full_like(t, K))
        steps = t[:, None] - n[:, None] + 1 + torch.arange(K, device=self.device)  # right-padded windows
        mask = torch.arange(K, device=self.device)[None] < n[:, None]
        steps = torch.where(mask, steps, t[:, None])
        batch = self._window(self._rows, steps, mask)
        pred, _ = self.model(batch)
        self._n_ctx.copy_(n)
        return pred[self._rows, n - 1]

    def _window(self, rows: torch.Tensor, steps: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
        s = steps % self.spec.context_len
        r = rows[:, None]
        return Batch(
            returns=self._ret[r, s], obs={k: v[r, s] for k, v in self._obs.items()}, actions=self._act[r, s],
            rewards=self._rew[r, s], timesteps=steps,
            mask=mask if mask is not None else torch.ones_like(steps, dtype=torch.bool),
        )

    def _obs_tensors(self, obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if self.spec.dict_obs:
            if not isinstance(obs, dict):
                raise DtkitError(f"this policy expects Dict observations with keys {[f.key for f in self.spec.obs]}, got {type(obs).__name__}")
            missing = [f.key for f in self.spec.obs if f.key not in obs]
            if missing:
                raise DtkitError(f"observation lacks key(s) {missing}: this policy expects Dict observations with keys "
                                 f"{[f.key for f in self.spec.obs]} (got {sorted(obs)}); pass every key the model was trained on")
            items: dict[str, Any] = {f.key: obs[f.key] for f in self.spec.obs}
        else:
            items = {"obs": obs}
        out = {}
        for f in self.spec.obs:
            arr = np.asarray(items[f.key])
            if f.info.modality == "image" and str(arr.dtype) != f.info.dtype:
                # A cast would silently turn float frames in [0, 1] into black uint8 ones: refuse instead.
                raise DtkitError(
                    f"image observation {f.key!r} has shape {tuple(arr.shape[1:])} dtype {arr.dtype} per environment, but the model "
                    f"was trained on shape {tuple(f.info.shape)} dtype {f.info.dtype}; feed frames as the dataset stored them "
                    "(same size, layout and dtype)"
                )
            x = torch.as_tensor(arr, device=self.device).to(_torch_dtype(f.info.dtype))
            if tuple(x.shape) != (self.num_envs, *f.info.shape):
                clip = ""
                if f.info.modality == "audio":  # a clip of the wrong length: say what a clip must be
                    rate = int(f.encoder.params.get("sample_rate", 16000))
                    clip = f" (clips of {f.info.shape[0]} samples at {rate} Hz; resample and pad or trim each clip)"
                raise DtkitError(
                    f"observation {f.key!r} has shape {tuple(x.shape)}, expected {(self.num_envs, *f.info.shape)}{clip} "
                    f"(num_envs={self.num_envs}); pass a batch with one row per environment"
                )
            out[f.key] = x
        return out

    # ------------------------------------------------------------------ SB3
    def predict(self, observation: Any, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Stable-Baselines3 ``predict``, so ``evaluate_policy`` can run a dtkit policy.

        SB3 never passes rewards, so the environment must report them: wrap each
        environment with :meth:`wrap_env` before handing it to SB3.
        """
        self.deterministic = deterministic
        first = observation[self.spec.obs[0].key] if isinstance(observation, dict) else observation
        n = len(np.asarray(first)) if np.ndim(first) > len(self.spec.obs[0].info.shape) else 1
        if n != self.num_envs or (episode_start is not None and np.size(episode_start) != self.num_envs):
            raise DtkitError(f"predict got observations for {n} envs but this policy drives num_envs={self.num_envs}; "
                             "make the policy with as many envs as the VecEnv (make_policy(..., num_envs=venv.num_envs))")
        starts = np.zeros(self.num_envs, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool).reshape(-1)
        if (self._unrecorded & ~starts).any():
            raise DtkitError("predict was called again before the rewards of the last actions reached the policy, so it would act "
                             "on one step of context; wrap each env with policy.wrap_env(env, index) before giving it to SB3")
        if starts.any():
            self.reset(starts)
        return self.act(observation), None

    def wrap_env(self, env: Any, index: int = 0) -> Any:
        """Wrap a gymnasium env so its rewards reach this policy's row ``index``."""
        from dtkit.rollout.reward_feed import RewardFeed

        return RewardFeed(env, self, index)


def _put(buf: torch.Tensor, flat: torch.Tensor, values: torch.Tensor) -> None:
    """buf[r, flat[r] - r * K] = values[r] for a (N, K, ...) ring buffer: one index_copy_, cheaper than an index_put."""
    buf.view(-1, *buf.shape[2:]).index_copy_(0, flat, values.to(buf.dtype))


def _take(buf: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """The (N, ...) rows of a (N, K, ...) ring buffer at flat indices ``flat`` (see :func:`_put`)."""
    return buf.view(-1, *buf.shape[2:]).index_select(0, flat)


def _torch_dtype(name: str) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=name)).dtype
