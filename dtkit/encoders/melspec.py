"""The audio front end: waveform -> normalised log-mel spectrogram, in torch.

torchaudio has no build for the pinned torch, so the mel filterbank is written
here. It follows librosa's defaults (Slaney's mel scale: linear below 1 kHz,
logarithmic above; each triangle scaled to unit area, ``norm="slaney"``) and
the STFT matches ``librosa.feature.melspectrogram`` (periodic Hann window,
centred frames, zero padding), which the tests check.

Normalisation lives here, never in per-sample dataset statistics: int16 samples
are scaled to [-1, 1], power goes to decibels relative to full scale with a
floor at ``-floor_db``, and the decibels map affinely to about [-1, 1]
(``db / (floor_db / 2) + 1``). The same fixed map applies in training and at
evaluation, and a silent (all-zero) clip maps to a constant.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank", "LogMel"]

_F_SP = 200.0 / 3  # Slaney: 66.67 Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mels
_LOGSTEP = math.log(6.4) / 27.0  # step size of the log region


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa's default, ``htk=False``)."""
    hz = torch.as_tensor(hz, dtype=torch.float64)
    return torch.where(hz >= _MIN_LOG_HZ, _MIN_LOG_MEL + torch.log(hz.clamp_min(1e-10) / _MIN_LOG_HZ) / _LOGSTEP, hz / _F_SP)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    return torch.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), mel * _F_SP)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced in mels, each of unit area (Slaney norm).

    Example:
        >>> mel_filterbank(16000, 400, 40).shape
        torch.Size([40, 201])
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))), n_mels + 2,
                                     dtype=torch.float64))  # (n_mels + 2,)
    width = edges[1:] - edges[:-1]  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, F)
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_mels, F)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # unit area per filter
    return weights.float()


class LogMel(nn.Module):
    """(N, n_samples) waveform (int16 or float in [-1, 1]) -> (N, n_mels, n_frames) normalised log-mel.

    Args:
        sample_rate: the clips' rate in Hz; it sets the filterbank's frequencies.
        n_fft: FFT size (400 = 25 ms at 16 kHz, the usual speech window).
        hop: samples between frames (160 = 10 ms).
        n_mels: mel bands.
        floor_db: decibels below full scale where the spectrogram is floored.

    Example:
        >>> LogMel()(torch.zeros(2, 16000, dtype=torch.int16)).shape
        torch.Size([2, 40, 101])
    """

    window: torch.Tensor
    fbank: torch.Tensor

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 40, floor_db: float = 80.0) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels, self.floor_db = sample_rate, n_fft, hop, n_mels, floor_db
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        self.register_buffer("fbank", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames for a clip of ``n_samples`` (centred frames: one per hop, plus one)."""
        return 1 + n_samples // self.hop

    def power_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_samples) -> (N, n_mels, n_frames) mel power, before the log (librosa's melspectrogram)."""
        if x.dtype == torch.int16:
            x = x.float() / 32768.0
        spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)  # (N, F, frames)
        return torch.matmul(self.fbank, spec.abs().pow(2))  # (N, n_mels, frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(self.power_mel(x).clamp_min(10.0 ** (-self.floor_db / 10.0)))  # in [-floor_db, ~+20]
        return db / (self.floor_db / 2.0) + 1.0  # (N, n_mels, frames), about [-1, 1]
