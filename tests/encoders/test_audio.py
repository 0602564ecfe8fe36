"""The audio encoders' contract: tokens from int16 clips, token count without building, clear errors."""

from __future__ import annotations

import pytest
import torch

from dtkit.encoders import EncoderConfig, FieldInfo, build_encoder, default_encoder, encoder_tokens
from dtkit.errors import DtkitError

AUDIO = FieldInfo((9600,), "int16")


def test_int16_waveforms_are_audio_and_default_to_the_conv_stem():
    assert AUDIO.modality == "audio"
    assert default_encoder(AUDIO).type == "audio_conv"


@pytest.mark.parametrize("cfg, tokens", [
    (EncoderConfig("audio_conv"), 4),
    (EncoderConfig("audio_conv", {"n_tokens": 2}), 2),
    (EncoderConfig("audio_patch"), 6),  # 40 mels / 20 x (61 frames // 20)
    (EncoderConfig("audio_patch", {"patch_mels": 10, "patch_frames": 30}), 8),
])
def test_tokens_known_before_building_and_shapes(cfg, tokens):
    assert encoder_tokens(cfg, AUDIO) == tokens
    enc = build_encoder(cfg, AUDIO, 16)
    out = enc(torch.randint(-2000, 2000, (3, 9600), dtype=torch.int16))
    assert out.shape == (3, tokens, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["audio_conv", "audio_patch"])
def test_tokens_depend_on_the_sound(name):
    enc = build_encoder(EncoderConfig(name), AUDIO, 16)
    a = torch.randint(-2000, 2000, (1, 9600), dtype=torch.int16)
    assert not torch.allclose(enc(a), enc(torch.zeros_like(a)))


@pytest.mark.parametrize("name", ["audio_conv", "audio_patch"])
def test_wrong_clip_length_names_the_expected_length(name):
    enc = build_encoder(EncoderConfig(name), AUDIO, 16)
    with pytest.raises(DtkitError, match=r"9600 samples \(0.6 s at 16000 Hz\).*\(8000,\)"):
        enc(torch.zeros(2, 8000, dtype=torch.int16))


def test_non_audio_field_is_refused_in_one_line():
    with pytest.raises(DtkitError, match="mono audio field"):
        encoder_tokens(EncoderConfig("audio_conv"), FieldInfo((4, 9600), "float32"))


def test_patches_that_do_not_tile_are_refused():
    with pytest.raises(DtkitError, match="do not tile"):
        encoder_tokens(EncoderConfig("audio_patch", {"patch_mels": 7}), AUDIO)


@pytest.mark.parametrize("name", ["audio_conv", "audio_patch"])
def test_repeated_clips_encoded_once_give_the_same_tokens(name):
    enc = build_encoder(EncoderConfig(name), AUDIO, 16).eval()
    a, b = (torch.randint(-2000, 2000, (1, 9600), dtype=torch.int16) for _ in range(2))
    x = torch.cat([a, a, a, b, b, a])  # runs, as an instruction repeated over steps
    with torch.no_grad():
        together = enc(x)
        alone = torch.cat([enc(row[None]) for row in x])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["audio_conv", "audio_patch"])
def test_augmentation_only_in_training_mode(name):
    enc = build_encoder(EncoderConfig(name), AUDIO, 16)
    x = torch.randint(-2000, 2000, (2, 9600), dtype=torch.int16)
    torch.manual_seed(0)
    assert not torch.allclose(enc.train()(x), enc(x))  # perturbed differently on each call
    assert torch.equal(enc.eval()(x), enc(x))  # evaluation is deterministic
    plain = build_encoder(EncoderConfig(name, {"augment": False}), AUDIO, 16)
    plain.load_state_dict(enc.state_dict())
    assert torch.equal(plain.train()(x), enc.eval()(x))


def test_perturbation_keeps_shape_and_the_silence_floor():
    from dtkit.encoders.audio import perturb

    mel = torch.rand(4, 40, 61) * 2 - 1
    out = perturb(mel)
    assert out.shape == mel.shape and out.min() >= -1.0 and not torch.equal(out, mel)
    silent = perturb(torch.full((2, 40, 61), -1.0))
    assert torch.all(silent <= -1.0 + 0.15 + 1e-6)  # silence stays near the floor (gain at most +-6 dB)
