"""Spaces -> spec for pixel fields, and the checks that stored or live images match what the model was built for."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import spec_from_spaces
from dtkit.data.spaces import check_env_spaces, check_obs_arrays
from dtkit.errors import DtkitError

IMAGE = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)


def _spec(space=IMAGE):
    return spec_from_spaces(space, gym.spaces.Discrete(3), context_len=4)


def _one_line_naming(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    missing = [w for w in words if w not in msg]
    assert not missing, f"{missing} not in: {msg}"


@pytest.mark.parametrize("stored, got", [
    (np.zeros((5, 64, 64, 3), np.uint8), "shape (64, 64, 3) dtype uint8"),
    (np.zeros((5, 84, 84, 3), np.float32), "shape (84, 84, 3) dtype float32"),
    (np.zeros((5, 3, 84, 84), np.uint8), "shape (3, 84, 84) dtype uint8"),
])
def test_stored_images_that_differ_from_the_encoder_name_both_shapes_and_dtypes(stored, got):
    with pytest.raises(DtkitError) as err:
        check_obs_arrays(_spec(), {"obs": stored}, "dataset 'pix/v0'")
    _one_line_naming(err, "dataset 'pix/v0'", got, "shape (84, 84, 3) dtype uint8", "'cnn'")


def test_matching_images_and_any_vector_dtype_pass():
    check_obs_arrays(_spec(), {"obs": np.zeros((2, 84, 84, 3), np.uint8)}, "dataset")
    vec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    check_obs_arrays(vec, {"obs": np.zeros((2, 3), np.float64)}, "dataset")  # the MLP casts vectors to float


@pytest.mark.parametrize("env_space, got", [
    (gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), "shape (64, 64, 3) dtype uint8"),
    (gym.spaces.Box(0, 1, (84, 84, 3), np.float32), "shape (84, 84, 3) dtype float32"),
])
def test_env_images_that_differ_from_the_checkpoint_name_both_shapes_and_dtypes(env_space, got):
    with pytest.raises(DtkitError) as err:
        check_env_spaces(_spec(), env_space, gym.spaces.Discrete(3), "PixEnv-v0", "checkpoint 'run/step_1'")
    _one_line_naming(err, "checkpoint 'run/step_1'", "PixEnv-v0", got, "shape (84, 84, 3) dtype uint8")


def test_checkpoint_spec_without_modality_still_matches_its_env():
    """A spec saved before fields had a modality loads, and still matches the env it came from."""
    from dtkit.spec import Spec

    saved = _spec().to_dict()
    for f in saved["obs"]:
        del f["info"]["modality"], f["info"]["layout"]
    spec = Spec.from_dict(saved)
    assert spec.obs[0].info.modality == "image" and spec.obs[0].info.layout == "HWC"
    check_env_spaces(spec, IMAGE, gym.spaces.Discrete(3), "PixEnv-v0", "checkpoint")


def test_float_frames_can_be_declared_images():
    """Float frames in [0, 1] are vectors by inference; declared images they get the CNN and no dataset statistics."""
    space = gym.spaces.Box(0, 1, (3, 16, 16), np.float32)
    assert spec_from_spaces(space, gym.spaces.Discrete(2)).obs[0].encoder.type == "mlp"
    spec = spec_from_spaces(space, gym.spaces.Discrete(2), modalities={"obs": "image"})
    f = spec.obs[0]
    assert (f.info.modality, f.info.layout, f.encoder.type, f.normalize) == ("image", "CHW", "cnn", False)
    with pytest.raises(DtkitError, match="unknown observation key"):
        spec_from_spaces(space, gym.spaces.Discrete(2), modalities={"camera": "image"})
    with pytest.raises(DtkitError, match="cannot be a 'image' field"):
        spec_from_spaces(gym.spaces.Box(0, 1, (5,)), gym.spaces.Discrete(2), modalities={"obs": "image"})
