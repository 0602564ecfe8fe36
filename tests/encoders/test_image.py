"""The image encoders: layouts, frame stacks, small images, pixel scaling, patch slots and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig, FieldInfo, build_encoder, encoder_tokens
from dtkit.errors import DtkitError

torch.manual_seed(0)


def _pixels(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)


@pytest.mark.parametrize("shape, layout", [
    ((4, 84, 84), "CHW"),   # Atari grey frame stack
    ((56, 56, 3), "HWC"),   # MiniGrid RGB
    ((7, 7, 3), "HWC"),     # MiniGrid's symbolic grid: the Nature stack would collapse it
    ((3, 28, 28), "CHW"),
    ((28, 28), "HW"),
    ((2, 12, 12, 3), "SHWC"),  # a stack of RGB frames
])
@pytest.mark.parametrize("name", ["cnn", "patch"])
def test_layouts_and_sizes(name, shape, layout):
    field = FieldInfo(shape, "uint8")
    assert field.modality == "image" and field.layout == layout
    enc = build_encoder(EncoderConfig(name), field, d_model=16)
    out = enc(_pixels(3, shape))
    assert out.shape == (3, enc.n_tokens, 16) and torch.isfinite(out).all()
    if name == "cnn":
        assert enc.n_tokens == 1
    else:
        assert 1 <= enc.n_tokens <= 36


def test_cnn_uses_the_nature_stack_on_atari_frames():
    enc = build_encoder(EncoderConfig("cnn"), FieldInfo((4, 84, 84), "uint8"), d_model=16)
    convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(4, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]
    assert enc.head[0].in_features == 64 * 7 * 7  # 84 -> 20 -> 9 -> 7, as in Mnih et al. (2015)


@pytest.mark.parametrize("name", ["cnn", "patch"])
def test_uint8_is_scaled_to_unit_range_inside_the_encoder(name):
    """A uint8 frame gives the same tokens as the same frame stored as floats in [0, 1]."""
    u8 = FieldInfo((12, 12, 3), "uint8")
    f32 = FieldInfo((12, 12, 3), "float32", modality="image")
    enc8 = build_encoder(EncoderConfig(name), u8, 16)
    enc32 = build_encoder(EncoderConfig(name), f32, 16)
    enc32.load_state_dict(enc8.state_dict())
    x = _pixels(2, (12, 12, 3))
    torch.testing.assert_close(enc8(x), enc32(x.float() / 255.0))


@pytest.mark.parametrize("layout_pair", [(((8, 8, 3)), (3, 8, 8))])
def test_hwc_and_chw_of_the_same_image_agree(layout_pair):
    hwc, chw = layout_pair
    a = build_encoder(EncoderConfig("patch", {"patch": 4}), FieldInfo(hwc, "uint8"), 16)
    b = build_encoder(EncoderConfig("patch", {"patch": 4}), FieldInfo(chw, "uint8"), 16)
    b.load_state_dict(a.state_dict())
    x = _pixels(2, hwc)
    torch.testing.assert_close(a(x), b(x.permute(0, 3, 1, 2).contiguous()))


def test_each_patch_is_its_own_token():
    """Changing the pixels of one patch changes that patch's token only."""
    enc = build_encoder(EncoderConfig("patch", {"patch": [4, 2]}), FieldInfo((8, 6, 3), "uint8"), 16)
    assert enc.n_tokens == 2 * 3
    x = _pixels(1, (8, 6, 3))
    y = x.clone()
    y[0, 4:8, 2:4] = 255 - y[0, 4:8, 2:4]  # patch (row 1, col 1) -> token 1 * 3 + 1
    changed = (enc(x) - enc(y)).abs().amax(-1)[0] > 0
    assert changed.tolist() == [i == 4 for i in range(6)]


def test_patch_size_is_chosen_to_fit_36_tokens():
    assert encoder_tokens(EncoderConfig("patch"), FieldInfo((84, 84, 3), "uint8")) == 36  # 14x14 patches
    assert encoder_tokens(EncoderConfig("patch", {"max_tokens": 49}), FieldInfo((7, 7, 3), "uint8")) == 49


@pytest.mark.parametrize("cfg, field, words", [
    (EncoderConfig("patch", {"patch": 5}), FieldInfo((84, 84, 3), "uint8"), ["patch 5x5", "84x84"]),
    (EncoderConfig("cnn"), FieldInfo((11,)), ["image field", "vector", "(11,)"]),
    (EncoderConfig("cnn", {"channels": [32, 64]}), FieldInfo((84, 84), "uint8"), ["channels"]),
    (EncoderConfig("cnn", {"depth": 3}), FieldInfo((84, 84), "uint8"), ["rejected its params", "depth"]),
])
def test_bad_encoder_settings_fail_before_building(cfg, field, words):
    with pytest.raises(DtkitError) as err:
        encoder_tokens(cfg, field)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("name", ["cnn", "patch"])
@pytest.mark.parametrize("x, got", [
    (torch.zeros(2, 64, 64, 3, dtype=torch.uint8), "shape (64, 64, 3) dtype uint8"),
    (torch.zeros(2, 84, 84, 3), "shape (84, 84, 3) dtype float32"),
])
def test_wrong_image_names_both_shapes_and_dtypes(name, x, got):
    enc = build_encoder(EncoderConfig(name), FieldInfo((84, 84, 3), "uint8"), 16)
    with pytest.raises(DtkitError) as err:
        enc(x)
    msg = str(err.value)
    assert "\n" not in msg and "shape (84, 84, 3) dtype uint8" in msg and got in msg, msg


def test_images_default_to_cnn_and_are_never_standardised():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), "dir": gym.spaces.Discrete(4),
                             "pos": gym.spaces.Box(-1, 1, (2,))})
    spec = spec_from_spaces(space, gym.spaces.Discrete(3))
    by_key = {f.key: f for f in spec.obs}
    assert by_key["image"].encoder.type == "cnn" and not by_key["image"].normalize
    assert by_key["dir"].encoder.type == "embedding" and not by_key["dir"].normalize
    assert by_key["pos"].encoder.type == "mlp" and by_key["pos"].normalize
    patched = spec_from_spaces(space, gym.spaces.Discrete(3), obs_encoders={"image": EncoderConfig("patch", {"patch": 1})})
    assert patched.tokens_per_step == 1 + 49 + 1 + 1 + 1


def test_a_hand_written_spec_cannot_standardise_pixels():
    """Even a spec that asks for it (normalize=True) and stats for the key leave pixels to the encoder."""
    from dataclasses import replace

    from dtkit.model import DecisionTransformer, ModelConfig

    spec = spec_from_spaces(gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(2), context_len=2)
    spec = replace(spec, obs=(replace(spec.obs[0], normalize=True),))
    stats = {"obs": {"mean": np.full((8, 8, 3), 100.0).tolist(), "std": np.full((8, 8, 3), 5.0).tolist()}}
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1), stats)
    frames = _pixels(2, (8, 8, 3)).view(1, 2, 8, 8, 3)
    torch.testing.assert_close(model.encode_obs({"obs": frames})["obs"], model._encode("obs/obs", frames))


@pytest.mark.parametrize("frames, got", [
    (np.zeros((2, 8, 8, 3), np.float32), "shape (8, 8, 3) dtype float32"),
    (np.zeros((2, 8, 8, 3), np.float64), "shape (8, 8, 3) dtype float64"),
])
def test_policy_refuses_frames_unlike_the_checkpoint(frames, got):
    """Casting float frames in [0, 1] to uint8 would feed black images: the policy names both shapes and dtypes."""
    from dtkit.model import DecisionTransformer, ModelConfig
    from dtkit.policy import DTPolicy

    spec = spec_from_spaces(gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(2), context_len=2)
    policy = DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=2, target_return=1.0)
    with pytest.raises(DtkitError) as err:
        policy.act(frames)
    msg = str(err.value)
    assert "\n" not in msg and got in msg and "shape (8, 8, 3) dtype uint8" in msg, msg
