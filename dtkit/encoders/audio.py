"""Audio encoders: a waveform clip -> N tokens of the trunk, beside image and vector tokens.

Both start from the torch log-mel front end (:class:`~dtkit.encoders.melspec.LogMel`),
which also normalises, so audio fields never get per-dataset statistics.

- ``audio_conv`` (the default for the "audio" modality): a small 2-D conv stem
  over the log-mel, frequency pooled away, time pooled to ``n_tokens`` segments;
  each segment is one token. Cheap and robust for short spoken commands.
- ``audio_patch``: AST-style (Gong et al., 2021): the log-mel is cut into
  non-overlapping ``patch_mels`` x ``patch_frames`` patches, each projected
  linearly to one token; every patch position is its own slot in the step, so
  the trunk's slot embedding plays the role of AST's patch positions.

Clips arrive as stored (int16 at ``sample_rate`` Hz, a fixed number of samples);
a batch of another length fails with one line naming the expected length.

In training mode (``augment=True``, the default) each distinct clip is perturbed
on its log-mel, as speech recognisers are: a random time stretch (speaking
rate, 0.85-1.15x) and frequency warp (vocal-tract length, 0.9-1.1x, after Jaitly
& Hinton, 2013), a gain of +-6 dB, and one SpecAugment frequency and time mask
each (Park et al., 2019). A dataset holds one clip per episode, a few thousand
in all; without this the encoder memorises them and misses new speakers
(measured: 82-87% success on the spoken-goal task without, see README). Evaluation
(``model.eval()``) never augments, so the policy and its cache stay deterministic.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dtkit.encoders.base import Encoder, FieldInfo
from dtkit.encoders.melspec import LogMel
from dtkit.encoders.registry import register_encoder, set_default_encoder
from dtkit.errors import DtkitError

__all__ = ["AudioConv", "AudioPatch", "DEFAULT_SAMPLE_RATE", "audio_samples", "check_audio_input", "perturb"]

DEFAULT_SAMPLE_RATE = 16000
"""Hz; the audio encoders' ``sample_rate`` default. Environments declare theirs as ``metadata["audio_sample_rate"]``."""


def audio_samples(field: FieldInfo) -> int:
    """Samples per clip of an audio field, (n_samples,); anything else is refused with one line."""
    if field.modality != "audio" or len(field.shape) != 1:
        raise DtkitError(
            f"an audio encoder needs a mono audio field of shape (n_samples,), got a {field.modality} field of shape "
            f"{field.shape} ({field.dtype}); store clips as int16 waveforms of one fixed length"
        )
    return int(field.shape[0])


def check_audio_input(x: torch.Tensor, field: FieldInfo, name: str, sample_rate: int) -> None:
    """Raise one clear line when a batch of clips does not have the length the encoder was built for."""
    n = int(field.shape[0])
    if tuple(x.shape[1:]) != (n,):
        raise DtkitError(
            f"audio encoder {name!r} was built for clips of {n} samples ({n / sample_rate:g} s at {sample_rate} Hz), "
            f"but got shape {tuple(x.shape[1:])}; resample to {sample_rate} Hz and pad or trim each clip to {n} samples"
        )


def perturb(mel: torch.Tensor, stretch: float = 0.15, warp: float = 0.1, gain: float = 0.15, max_mels: int = 6,
            max_frames: int = 8) -> torch.Tensor:
    """Random per-clip time stretch, frequency warp, gain and one frequency and time mask of a normalised log-mel.

    ``mel``: (N, n_mels, frames), about [-1, 1] with -1 the silence floor (see LogMel). The stretch and
    warp are anchored at the clip's start and the lowest band; what moves in from outside repeats the edge.
    """
    N, M, T = mel.shape
    dev = mel.device
    sx = 1 + (torch.rand(N, device=dev) * 2 - 1) * stretch  # input frames per output frame
    sy = 1 + (torch.rand(N, device=dev) * 2 - 1) * warp
    theta = torch.zeros(N, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx, sx - 1  # x (time): -1 maps to -1
    theta[:, 1, 1], theta[:, 1, 2] = sy, sy - 1  # y (mel band): -1 maps to -1
    grid = F.affine_grid(theta, [N, 1, M, T], align_corners=False)
    out = F.grid_sample(mel[:, None], grid, padding_mode="border", align_corners=False)[:, 0]  # (N, M, T)
    out = (out + (torch.rand(N, 1, 1, device=dev) * 2 - 1) * gain).clamp_min(-1.0)
    band = torch.arange(M, device=dev)[None, :, None]
    frame = torch.arange(T, device=dev)[None, None, :]
    f0 = (torch.rand(N, 1, 1, device=dev) * M).long()
    t0 = (torch.rand(N, 1, 1, device=dev) * T).long()
    fw = (torch.rand(N, 1, 1, device=dev) * (max_mels + 1)).long()
    tw = (torch.rand(N, 1, 1, device=dev) * (max_frames + 1)).long()
    masked = ((band >= f0) & (band < f0 + fw)) | ((frame >= t0) & (frame < t0 + tw))
    return out.masked_fill(masked, -1.0)


class _AudioEncoder(Encoder):
    """Shared front end and input check; subclasses turn the log-mel into tokens in :meth:`tokens`."""

    name = "audio"

    def __init__(self, field: FieldInfo, d_model: int, sample_rate: int, n_mels: int, hop: int, augment: bool) -> None:
        super().__init__(field, d_model)
        audio_samples(field)
        self.sample_rate, self.augment = sample_rate, augment
        self.frontend = LogMel(sample_rate=sample_rate, n_mels=n_mels, hop=hop)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        mel = self.frontend(x)  # (N, n_mels, frames)
        return perturb(mel) if self.training and self.augment else mel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_audio_input(x, self.field, self.name, self.sample_rate)
        # An instruction repeated at every step arrives as runs of identical rows (the model
        # flattens (B, T) with steps adjacent): encode each run once and copy its tokens,
        # which cuts the front end's cost by up to K times in training.
        if x.shape[0] > 1:
            starts = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            starts[1:] = (x[1:] != x[:-1]).any(dim=-1)
            if not bool(starts.all()):
                run = torch.cumsum(starts, 0) - 1  # (N,) index of each row's run
                return self.tokens(self._features(x[starts]))[run]
        return self.tokens(self._features(x))  # (N, n_mels, frames) -> (N, n_tokens, D)

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register_encoder("audio_conv")
class AudioConv(_AudioEncoder):
    """Log-mel -> 3 conv layers (stride 2) -> bands folded into channels -> ``n_tokens`` time segments -> tokens.

    The bands left after the stem (40 mels -> 5) are kept apart, not averaged: a vowel is
    told by where its formants sit (F2 of "blue" vs "green"), which a mean over frequency loses.

    Args:
        n_tokens: tokens per clip, each summarising an equal span of time.
        channels: conv width.
        sample_rate, n_mels, hop: the front end's settings.
        augment: perturb clips in training mode (see the module docstring).

    Example:
        >>> enc = AudioConv(FieldInfo((9600,), "int16", modality="audio"), d_model=32)
        >>> enc(torch.zeros(2, 9600, dtype=torch.int16)).shape
        torch.Size([2, 4, 32])
    """

    name = "audio_conv"

    def __init__(self, field: FieldInfo, d_model: int, n_tokens: int = 4, channels: int = 32, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 n_mels: int = 40, hop: int = 160, augment: bool = True) -> None:
        super().__init__(field, d_model, sample_rate, n_mels, hop, augment)
        self.n_tokens = self.n_tokens_for(field, {"n_tokens": n_tokens})
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(1, c // 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU(),
        )
        bands = n_mels
        for _ in range(3):
            bands = (bands - 1) // 2 + 1  # each conv: kernel 3, stride 2, padding 1
        self.pool = nn.AdaptiveAvgPool1d(self.n_tokens)
        self.proj = nn.Linear(c * bands, d_model)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        audio_samples(field)
        n = int(params.get("n_tokens", 4))
        if n < 1:
            raise ValueError(f"n_tokens={n} is invalid; use at least 1")
        return n

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.stem(mel[:, None])  # (N, 1, n_mels, frames) -> (N, C, n_mels / 8, frames / 8)
        h = self.pool(h.flatten(1, 2))  # (N, C * bands, n_tokens)
        return self.proj(h.transpose(1, 2))  # (N, n_tokens, D)


@register_encoder("audio_patch")
class AudioPatch(_AudioEncoder):
    """AST-style patches of the log-mel, one token each, in (frequency, time) row-major order.

    Frames beyond a whole number of patches are dropped (at most ``patch_frames - 1``
    frames, i.e. the tail of the clip's padding).

    Example:
        >>> enc = AudioPatch(FieldInfo((9600,), "int16", modality="audio"), d_model=32)
        >>> enc(torch.zeros(2, 9600, dtype=torch.int16)).shape  # 40 mels / 20 x 61 frames // 20
        torch.Size([2, 6, 32])
    """

    name = "audio_patch"

    def __init__(self, field: FieldInfo, d_model: int, patch_mels: int = 20, patch_frames: int = 20, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 n_mels: int = 40, hop: int = 160, augment: bool = True) -> None:
        super().__init__(field, d_model, sample_rate, n_mels, hop, augment)
        params = {"patch_mels": patch_mels, "patch_frames": patch_frames, "n_mels": n_mels, "hop": hop}
        self.n_tokens = self.n_tokens_for(field, params)
        self.pm, self.pf = patch_mels, patch_frames
        self.n_time = self.frontend.n_frames(audio_samples(field)) // patch_frames
        self.proj = nn.Linear(patch_mels * patch_frames, d_model)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        n_samples = audio_samples(field)
        pm, pf = int(params.get("patch_mels", 20)), int(params.get("patch_frames", 20))
        n_mels, hop = int(params.get("n_mels", 40)), int(params.get("hop", 160))
        frames = 1 + n_samples // hop
        if pm < 1 or pf < 1 or n_mels % pm or frames < pf:
            raise ValueError(
                f"patches of {pm} mels x {pf} frames do not tile a log-mel of {n_mels} mels x {frames} frames; "
                "patch_mels must divide n_mels and patch_frames be at most the frame count"
            )
        return (n_mels // pm) * (frames // pf)

    def tokens(self, mel: torch.Tensor) -> torch.Tensor:
        m = mel[:, :, : self.n_time * self.pf]  # (N, n_mels, whole patches of frames)
        patches = rearrange(m, "n (fm pm) (ft pf) -> n (fm ft) (pm pf)", pm=self.pm, pf=self.pf)  # (N, n_tokens, pm * pf)
        return self.proj(patches)  # (N, n_tokens, D)


set_default_encoder("audio", "audio_conv")
