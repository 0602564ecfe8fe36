"""The decision transformer: encoders -> tokens -> trunk -> action head.

Per step the tokens are laid out as the spec says (default ``[R, obs..., a]``).
Every token gets a learned slot embedding and the learned embedding of its
episode timestep; there is no global token position, so token counts can
differ between tasks and a KV cache stays exact whatever slot a key sits in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dtkit.batch import Batch
from dtkit.encoders import EncoderConfig, FieldInfo, build_encoder
from dtkit.model.cache import KVCache
from dtkit.model.config import ModelConfig
from dtkit.model.dropout import Dropout
from dtkit.model.heads import ActionHead
from dtkit.model.masks import token_rule, window_mask
from dtkit.model.trunk import Trunk
from dtkit.spec import Spec

__all__ = ["DecisionTransformer"]


class DecisionTransformer(nn.Module):
    """One causal Transformer over returns, observations (any modality), actions and rewards.

    Args:
        spec: what a timestep holds (derived from the data).
        cfg: trunk hyperparameters.
        obs_stats: key -> {"mean": array, "std": array} for normalised observation keys.

    Example:
        >>> from dtkit.spec import Spec, ObsField, ActionSpec
        >>> spec = Spec(obs=(ObsField("obs", FieldInfo((4,)), EncoderConfig("mlp")),),
        ...             action=ActionSpec("discrete", 1, n=2), context_len=5)
        >>> model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=1))
    """

    _step_rule: torch.Tensor
    _step_slots: torch.Tensor
    _step_time_of: torch.Tensor
    _slot_is_obs: torch.Tensor
    _last: torch.Tensor

    def __init__(self, spec: Spec, cfg: ModelConfig, obs_stats: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        D = cfg.d_model
        enc = {"return": build_encoder(EncoderConfig("scalar"), FieldInfo(()), D)}
        if "reward" in spec.layout:
            enc["reward"] = build_encoder(EncoderConfig("scalar"), FieldInfo(()), D)
        act = spec.action
        enc["action"] = (
            build_encoder(EncoderConfig("embedding"), FieldInfo((), "int64", act.n), D)
            if act.discrete
            else build_encoder(EncoderConfig("linear"), FieldInfo((act.dim,)), D)
        )
        for f in spec.obs:
            e = build_encoder(f.encoder, f.info, D)
            if e.n_tokens != f.n_tokens:
                raise ValueError(f"encoder {f.encoder.type!r} for {f.key!r} yields {e.n_tokens} tokens, spec says {f.n_tokens}")
            enc[f"obs/{f.key}"] = e
        self.encoders = nn.ModuleDict(enc)
        S = spec.tokens_per_step
        self.timestep_emb = nn.Embedding(spec.max_timestep + 1, D)
        self.slot_emb = nn.Embedding(S, D)
        self.embed_ln = nn.LayerNorm(D)
        self.drop = Dropout(cfg.dropout)
        self.trunk = Trunk(cfg)
        self.head = ActionHead(act, D)

        # Observation statistics are buffers that stay out of state_dict: the
        # checkpoint's JSON is their single source, saved next to the weights.
        obs_stats = obs_stats or {}
        self._norm_keys: list[str] = []
        for i, f in enumerate(spec.obs):
            # Pixels and audio are scaled by their encoders, never by per-dataset statistics.
            if f.normalize and f.key in obs_stats and f.info.modality not in ("image", "audio"):
                self.register_buffer(f"_obs_mean{i}", torch.as_tensor(np.asarray(obs_stats[f.key]["mean"], np.float32)), persistent=False)
                self.register_buffer(f"_obs_std{i}", torch.as_tensor(np.asarray(obs_stats[f.key]["std"], np.float32)), persistent=False)
                self._norm_keys.append(f.key)

        slot_is_obs = torch.tensor([name.startswith("obs/") for name, _ in spec.slots])
        self.register_buffer("_slot_is_obs", slot_is_obs, persistent=False)
        self.n_pre = spec.readout_slot + 1
        self.n_post = S - self.n_pre
        post = torch.arange(self.n_pre, S)
        pre = torch.arange(self.n_pre)
        step_slots = torch.cat([post, pre])
        step_of = torch.cat([torch.full((self.n_post,), -1), torch.zeros(self.n_pre, dtype=torch.long)])
        self.register_buffer(
            "_step_rule", token_rule(step_of, step_slots, slot_is_obs[step_slots], S, spec.block_obs_attention), persistent=False
        )
        # One cached step embeds [post fields of t-1, pre fields of t] in one pass: their slot ids, and which
        # of the two timesteps (0: t-1, 1: t) each token carries.
        self.register_buffer("_step_slots", step_slots, persistent=False)
        self.register_buffer("_step_time_of", step_of + 1, persistent=False)
        self._post_fields, self._pre_fields = spec.post_fields, spec.pre_fields
        self._rules: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.register_buffer("_last", torch.tensor([S - 1]), persistent=False)
        # Slots of the fields that can be absent (spec: maskable), per key. Where such a field
        # is absent its tokens keep their slots but no other token sees them (DESIGN: presence mask).
        self._maskable = {f.key: [i for i, (name, _) in enumerate(spec.slots) if name == f"obs/{f.key}"]
                          for f in spec.obs if f.maskable}
        # A pure causal rule lets SDPA use its is_causal fast path.
        self._plain_causal = not spec.block_obs_attention or int(slot_is_obs.sum()) <= 1
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # GPT-2 initialisation, as nanoGPT and the original DT use.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- embedding
    def _encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        enc = self.encoders[name]
        return enc(x.reshape(B * T, *x.shape[2:])).view(B, T, enc.n_tokens, -1)  # (B, T, n, D)

    def encode_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The observation encoders' outputs: key -> (B, T, *shape) in, key -> (B, T, n_tokens, D) out.

        Standardisation (for the keys whose encoder wants it) is included. The policy
        keeps these per step, so a cache rebuild never re-runs an encoder (a CNN).
        """
        out = {}
        for i, f in enumerate(self.spec.obs):
            x = obs[f.key]
            if f.key in self._norm_keys:
                x = (x.float() - getattr(self, f"_obs_mean{i}")) / getattr(self, f"_obs_std{i}")
            out[f.key] = self._encode(f"obs/{f.key}", x)
        return out

    def _embed(self, names: tuple[str, ...], inputs: dict[str, Any], timesteps: torch.Tensor, slots: slice,
               obs_tokens: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Tokens of the fields ``names`` for (B, T) steps -> (B, T, n_slots, D), positions added.

        ``obs_tokens`` (key -> (B, T, n, D)) are encoder outputs computed earlier; when
        given, the observation encoders are not run.
        """
        parts = []
        for name in names:
            if name != "obs":
                parts.append(self._encode(name, inputs[name]))
                continue
            toks = obs_tokens if obs_tokens is not None else self.encode_obs(inputs["obs"])
            parts.extend(toks[f.key] for f in self.spec.obs)
        tok = torch.cat(parts, dim=2)
        t = timesteps.clamp(0, self.spec.max_timestep)
        tok = tok + self.slot_emb.weight[slots] + self.timestep_emb(t)[:, :, None]
        return self.embed_ln(tok)

    def presence(self, obs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """key -> (...) bool for every maskable field: ``present[key]`` when given, else derived
        from ``obs[key]`` of shape (..., *field.shape): a clip that is all zeros is absent."""
        out = {}
        for f in self.spec.obs:
            if f.key not in self._maskable:
                continue
            if present is not None and f.key in present:
                out[f.key] = present[f.key].bool()
            elif f.key in obs:
                x = obs[f.key]
                out[f.key] = x.reshape(*x.shape[: x.dim() - len(f.info.shape)], -1).ne(0).any(-1)
            else:
                raise ValueError(f"the presence of maskable field {f.key!r} is unknown: pass its observation or present[{f.key!r}]")
        return out

    def token_valid(self, batch: Batch) -> torch.Tensor | None:
        """(B, T * S) bool, False at the tokens of absent fields; None when no field can be absent.

        A cache rebuilt from a window loads this, so absent tokens stay hidden there too.
        """
        if not self._maskable:
            return None
        B, T = batch.timesteps.shape
        present = self.presence(batch.obs, batch.present)
        return self._slot_valid(present, (B, T), batch.timesteps.device).reshape(B, -1)

    def _slot_valid(self, present: dict[str, torch.Tensor], lead: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """(*lead, S) bool: False at the slots of fields absent at that step."""
        valid = torch.ones(*lead, self.spec.tokens_per_step, dtype=torch.bool, device=device)
        for key, p in present.items():
            valid[..., self._maskable[key]] = p[..., None]
        return valid

    def _window_rule(self, T: int, device: torch.device) -> torch.Tensor:
        """(T*S, T*S) attention rule for a window of T steps, built once per length and device."""
        if (T, device) not in self._rules:
            S = self.spec.tokens_per_step
            step = torch.arange(T).repeat_interleave(S)
            slot = torch.arange(S).repeat(T)
            rule = token_rule(step, slot, self._slot_is_obs.cpu()[slot], S, self.spec.block_obs_attention)
            self._rules[(T, device)] = rule.to(device)
        return self._rules[(T, device)]

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch, return_kv: bool = False, kv_only: bool = False,
                obs_tokens: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor | None, list]:
        """Predict a_t at every step of the windows.

        Returns:
            (B, T, A) predictions (tanh outputs in [-1, 1], or logits) and, with
            ``return_kv``, each layer's keys/values (B, nh, T * S, hs). With
            ``kv_only`` only the keys/values are computed and the predictions are None.
            ``obs_tokens`` (key -> (B, T, n, D), from :meth:`encode_obs`) replace
            running the observation encoders on ``batch.obs``.
        """
        B, T = batch.timesteps.shape
        S = self.spec.tokens_per_step
        inputs = {"return": batch.returns, "obs": batch.obs, "action": batch.actions, "reward": batch.rewards}
        x = self.drop(self._embed(self.spec.layout, inputs, batch.timesteps, slice(0, S), obs_tokens))  # (B, T, S, D)
        x = x.reshape(B, T * S, -1)
        padded, right_padded = _padding_kind(batch.mask)
        readout = self._readout_positions(T, x.device)
        rule = self._window_rule(T, x.device)  # (L, L), cached per length
        present = self.presence(batch.obs, batch.present) if self._maskable else {}
        attn_mask: torch.Tensor | None
        if present and not bool(torch.stack([p.all() for p in present.values()]).all()):
            # Some field is absent somewhere: its keys are hidden row by row (every query still
            # sees itself, so no row turns into NaN). The readout slot is never maskable.
            key_valid = self._slot_valid(present, (B, T), x.device).reshape(B, T * S)
            if padded:
                key_valid &= batch.mask.repeat_interleave(S, dim=1)
            attn_mask = window_mask(rule, key_valid)  # (B, 1, L, L)
            readout_mask = attn_mask[:, :, readout]
        elif not padded or right_padded:
            # Padding only after the real steps (the sampler and the policy pad on the
            # right) is never reached by a real query: the rule is causal and a step's
            # observation block never mixes real and padding steps. So one (L, L) rule
            # shared by the whole batch is exact, and padding queries still see
            # themselves and earlier real keys, so they stay finite. No (B, 1, L, L) mask.
            attn_mask = None if self._plain_causal else rule[None, None]  # None: SDPA's is_causal path
            readout_mask = rule[readout][None, None]  # (1, 1, T, L)
        else:
            # Padding before or between real steps (not produced by dtkit itself) needs
            # a per-row key mask: the general, materialised path.
            attn_mask = window_mask(rule, batch.mask.repeat_interleave(S, dim=1))  # (B, 1, L, L)
            readout_mask = attn_mask[:, :, readout]
        h, kvs = self.trunk(x, attn_mask, readout=readout, readout_mask=readout_mask,
                            return_kv=return_kv or kv_only, kv_only=kv_only)
        return (None if kv_only else self.head(h)), kvs  # (B, T, A)

    def _readout_positions(self, T: int, device: torch.device) -> torch.Tensor:
        S = self.spec.tokens_per_step
        return torch.arange(T, device=device) * S + self.spec.readout_slot

    def step(
        self,
        cache: KVCache,
        prev: dict[str, torch.Tensor],  # post-act fields of step t-1: action (B, ...), reward (B,)
        prev_timestep: torch.Tensor,  # (B,) long
        prev_valid: torch.Tensor,  # (B,) bool: False where step t-1's tokens are absent or cached already
        cur: dict[str, Any],  # pre-act fields of step t: return (B,), obs {key: (B, ...)}, optional present {key: (B,)}
        timestep: torch.Tensor,  # (B,) long
        obs_tokens: dict[str, torch.Tensor] | None = None,  # key -> (B, n, D) encoder outputs of step t's obs, if computed
        static: bool = False,  # shapes independent of the cache's fill levels, for CUDA graphs (KVCache.begin_step)
    ) -> torch.Tensor:
        """Feed one step per row through the cache and predict a_t: returns (B, A)."""
        B = timestep.shape[0]
        S = self.spec.tokens_per_step
        x = self._embed_step(prev, prev_timestep, cur, timestep, obs_tokens)  # (B, F=S, D)
        new_valid = torch.ones(B, S, dtype=torch.bool, device=x.device)
        if self._maskable:  # absent fields of step t stay invisible in the cache, exactly as in a recompute
            present = self.presence(cur["obs"], cur.get("present"))
            new_valid[:, self.n_post:] = self._slot_valid(present, (B,), x.device)[:, : self.n_pre]
        new_valid[:, : self.n_post] = prev_valid[:, None]
        mask = cache.begin_step(new_valid, self._step_rule, static=static)
        return self.head(self.trunk.step(x, mask, cache)[:, 0])

    def _embed_step(self, prev: dict[str, torch.Tensor], prev_timestep: torch.Tensor, cur: dict[str, Any],
                    timestep: torch.Tensor, obs_tokens: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """[post fields of step t-1, pre fields of step t] -> (B, S, D) in one pass: one concatenation,
        one position lookup and one LayerNorm (what :meth:`_embed` gives for each half, as LayerNorm is per token)."""
        parts = []
        halves: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ((self._post_fields, prev), (self._pre_fields, cur))
        for fields, source in halves:
            for name in fields:
                if name != "obs":
                    parts.append(self.encoders[name](source[name]))  # (B, n, D)
                    continue
                toks = obs_tokens
                if toks is None:
                    toks = {k: v[:, 0] for k, v in self.encode_obs({k: x[:, None] for k, x in source["obs"].items()}).items()}
                parts.extend(toks[f.key] for f in self.spec.obs)
        tok = torch.cat(parts, dim=1)  # (B, S, D)
        t = torch.stack([prev_timestep, timestep], dim=1).clamp(0, self.spec.max_timestep)  # (B, 2)
        tok = tok + self.slot_emb.weight[self._step_slots] + self.timestep_emb(t)[:, self._step_time_of]
        return self.embed_ln(tok)

    def new_cache(self, batch: int, device: torch.device | str = "cpu") -> KVCache:
        """A cache for ``batch`` rows that holds K full steps plus one step's placeholders."""
        c = self.cfg
        capacity = (self.spec.context_len + 1) * self.spec.tokens_per_step
        return KVCache(batch, c.n_layer, c.n_head, c.d_model // c.n_head, capacity, device=device)

    def configure_optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices only (nanoGPT): no decay on biases, LayerNorm gains.

        The fused kernel (one pass over each tensor instead of about ten elementwise ops) is used
        where torch has it (CPU and CUDA float parameters); the update is the same within round-off.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def _padding_kind(mask: torch.Tensor | None) -> tuple[bool, bool]:
    """(any padding, all padding after the real steps) for a (B, T) step mask, with one device sync."""
    if mask is None:
        return False, True
    has_pad = ~mask.all()
    right = (mask[:, 1:] <= mask[:, :-1]).all()  # True, then only False, along each row
    padded, right_padded = torch.stack([has_pad, right]).tolist()
    return bool(padded), bool(right_padded)
