"""The encoder contract: every registered encoder, a class-path one and an entry-point one."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import torch

from dtkit.encoders import (
    Encoder,
    EncoderConfig,
    FieldInfo,
    build_encoder,
    encoder_class,
    encoder_tokens,
    known_encoders,
    register_encoder,
)
from dtkit.encoders import registry as registry_mod
from dtkit.errors import DtkitError


class ThirdParty(Encoder):
    """Stands in for a user's encoder: a vector -> 3 tokens."""

    def __init__(self, field: FieldInfo, d_model: int, scale: float = 1.0) -> None:
        super().__init__(field, d_model)
        self.n_tokens = 3
        self.scale = scale
        self.proj = torch.nn.Linear(field.shape[0], 3 * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.float() * self.scale).view(-1, 3, self.d_model)


def _field_for(name: str) -> FieldInfo:
    if name in ("cnn", "patch"):
        return FieldInfo((12, 12, 3), "uint8")
    if name.startswith("audio_"):
        return FieldInfo((3200,), "int16")  # 0.2 s at 16 kHz
    if name == "embedding":
        return FieldInfo((), "int64", n=7)
    if name == "scalar":
        return FieldInfo(())
    return FieldInfo((5,))


def _input(field: FieldInfo, n: int) -> torch.Tensor:
    if field.n is not None:
        return torch.randint(0, field.n, (n,))
    if field.dtype == "uint8":
        return torch.randint(0, 256, (n, *field.shape), dtype=torch.uint8)
    if field.dtype == "int16":
        return torch.randint(-32768, 32768, (n, *field.shape), dtype=torch.int16)
    return torch.randn(n, *field.shape)


@pytest.mark.parametrize("name", [*known_encoders(), f"{__name__}:ThirdParty"])
def test_shape_contract(name):
    field = _field_for(name)
    enc = build_encoder(EncoderConfig(name), field, d_model=24)
    out = enc(_input(field, 6))
    assert out.shape == (6, enc.n_tokens, 24)
    assert torch.isfinite(out).all()
    # The token count is known without building the encoder (the spec needs it first).
    assert encoder_tokens(EncoderConfig(name), field) == enc.n_tokens


def test_params_reach_the_encoder():
    enc = build_encoder(EncoderConfig("mlp", {"hidden": 32, "n_tokens": 4}), FieldInfo((5,)), 16)
    assert enc.n_tokens == 4 and enc(torch.randn(2, 5)).shape == (2, 4, 16)


def test_unknown_name_lists_known_ones():
    with pytest.raises(DtkitError) as err:
        encoder_class("no-such-encoder")
    msg = str(err.value)
    assert "unknown encoder 'no-such-encoder'" in msg and "mlp" in msg and "embedding" in msg


def test_bad_class_path_names_the_path():
    with pytest.raises(DtkitError, match="no_such_module:Enc"):
        encoder_class("no_such_module:Enc")
    with pytest.raises(DtkitError, match="not a subclass"):
        encoder_class("torch.nn:Linear")


def test_entry_point_is_looked_up_when_name_is_unknown(monkeypatch):
    ep = EntryPoint(name="thirdparty", value=f"{__name__}:ThirdParty", group="dtkit.encoders")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep] if group == "dtkit.encoders" else [])
    assert encoder_class("thirdparty") is ThirdParty
    assert "thirdparty" in known_encoders()


def test_register_decorator_and_subclass_check():
    @register_encoder("test-mean")
    class Mean(Encoder):
        def __init__(self, field, d_model):
            super().__init__(field, d_model)
            self.n_tokens = 1
            self.proj = torch.nn.Linear(1, d_model)

        def forward(self, x):
            return self.proj(x.float().mean(-1, keepdim=True)).unsqueeze(1)

    assert encoder_class("test-mean") is Mean
    with pytest.raises(TypeError, match="must implement forward"):
        class NoForward(Encoder):  # noqa: F841
            pass


def test_config_round_trip():
    cfg = EncoderConfig("mlp", {"hidden": 8})
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    field = FieldInfo((2, 3), "uint8")
    assert FieldInfo.from_dict(field.to_dict()) == field


def test_unknown_params_fail_without_building():
    with pytest.raises(DtkitError, match="rejected its params"):
        encoder_tokens(EncoderConfig("mlp", {"hiden": 8}), FieldInfo((5,)))


def test_old_field_dicts_get_modality_and_layout():
    """Specs saved before modality/layout existed still load, with both inferred."""
    assert FieldInfo.from_dict({"shape": [4, 84, 84], "dtype": "uint8", "n": None}) == FieldInfo((4, 84, 84), "uint8", None, "image", "CHW")
    assert FieldInfo.from_dict({"shape": [11], "dtype": "float32", "n": None}).modality == "vector"
    assert FieldInfo.from_dict({"shape": [], "dtype": "int64", "n": 3}).modality == "discrete"
