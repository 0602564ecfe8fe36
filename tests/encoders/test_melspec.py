"""The torch log-mel front end against librosa (a test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtkit.encoders.melspec import LogMel, hz_to_mel, mel_filterbank, mel_to_hz

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("sr, n_fft, n_mels", [(16000, 400, 40), (16000, 512, 64), (22050, 1024, 80)])
def test_filterbank_matches_librosa(sr, n_fft, n_mels):
    ours = mel_filterbank(sr, n_fft, n_mels).numpy()
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_mel_scale_matches_librosa_and_inverts():
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(hz_to_mel(torch.from_numpy(hz)).numpy(), librosa.hz_to_mel(hz), rtol=1e-9)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(torch.from_numpy(hz))).numpy(), hz, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n_samples, hop", [(9600, 160), (4000, 100)])
def test_mel_power_matches_librosa_on_speech_like_audio(n_samples, hop):
    rng = np.random.default_rng(0)
    t = np.arange(n_samples) / 16000
    # A vowel-like harmonic tone with noise, as int16.
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 2400), start=1))
    clip = np.clip(wave * 8000 + rng.normal(0, 300, n_samples), -32768, 32767).astype(np.int16)
    ours = LogMel(hop=hop).power_mel(torch.from_numpy(clip)[None])[0].numpy()
    ref = librosa.feature.melspectrogram(y=clip.astype(np.float32) / 32768, sr=16000, n_fft=400, hop_length=hop, n_mels=40)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * ref.max())


def test_normalisation_is_fixed_and_bounded():
    front = LogMel()
    silent = front(torch.zeros(1, 1600, dtype=torch.int16))
    assert torch.all(silent == -1.0)  # the floor maps to -1 whatever the clip
    loud = front(torch.full((1, 1600), 32767, dtype=torch.int16))
    assert loud.max() < 2.0
    # No per-sample statistics: scaling one clip in a batch does not change another's features.
    x = torch.randint(-3000, 3000, (2, 1600), dtype=torch.int16)
    y = x.clone()
    y[1] //= 4
    assert torch.equal(front(x)[0], front(y)[0])
