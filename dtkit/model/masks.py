"""Attention rules over tokens labelled by (step, slot).

Tokens are ordered step by step, slot by slot, so "causal" means a token sees
every token at or before its own (step, slot). With ``block_obs`` the tokens of
one observation also see each other, as in Multi-Game DT (Lee et al., 2022);
they are all known before the action is chosen, so nothing leaks.
"""

from __future__ import annotations

import torch

__all__ = ["token_rule", "window_mask"]


def token_rule(step: torch.Tensor, slot: torch.Tensor, is_obs: torch.Tensor, n_slots: int, block_obs: bool) -> torch.Tensor:
    """(L, L) bool: query i may attend to key j.

    Args:
        step, slot: (L,) long, each token's step (relative) and slot within the step.
        is_obs: (L,) bool, True for observation tokens.
    """
    order = step * n_slots + slot
    allowed = order[:, None] >= order[None, :]
    if block_obs:
        allowed |= (step[:, None] == step[None, :]) & is_obs[:, None] & is_obs[None, :]
    return allowed


def window_mask(rule: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
    """Combine a (L, L) rule with a (B, L) key-validity mask into (B, 1, L, L).

    Padding keys are hidden; every query still sees itself, so padded rows stay finite.
    """
    if key_valid is None:
        return rule[None, None]
    eye = torch.eye(rule.shape[0], dtype=torch.bool, device=rule.device)
    return ((rule[None] & key_valid[:, None, :]) | eye)[:, None]
