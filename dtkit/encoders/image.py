"""Image encoders: a Nature-DQN CNN (one token per observation) and ViT-style patches (one token per patch).

Images arrive as stored, in their compact dtype (uint8, HWC or CHW, frame stacks
included), and are scaled to [0, 1] here, inside the encoder: normalisation is
the encoder's business, so image fields are never standardised with per-dataset
statistics. A frame stack becomes extra channels, as in DQN (Mnih et al., 2015).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from dtkit.encoders.base import Encoder, FieldInfo
from dtkit.encoders.registry import register_encoder
from dtkit.errors import DtkitError

__all__ = ["NatureCNN", "PatchEncoder", "check_image_input", "image_chw", "to_nchw"]

# (kernel, stride, padding) of the Nature-DQN conv stack; its channels are (32, 64, 64).
NATURE_CONVS = ((8, 4, 0), (4, 2, 0), (3, 1, 0))
# Below this side the Nature stack would shrink the map to nothing (36 -> 8 -> 3 -> 1).
NATURE_MIN_SIDE = 36

_TO_NCHW = {
    "HW": "n h w -> n 1 h w",
    "HWC": "n h w c -> n c h w",
    "CHW": "n c h w -> n c h w",
    "SHWC": "n s h w c -> n (s c) h w",
    "SCHW": "n s c h w -> n (s c) h w",
}


def image_chw(field: FieldInfo) -> tuple[int, int, int]:
    """(channels, height, width) the encoder sees for an image field; frame stacks fold into channels."""
    if field.modality != "image":
        raise DtkitError(
            f"an image encoder needs an image field, got a {field.modality} field of shape {field.shape} ({field.dtype}); "
            "use 'mlp' for vectors, or store images as uint8 of rank 2 to 4"
        )
    dims = dict(zip(field.layout, field.shape))
    return dims.get("S", 1) * dims.get("C", 1), dims["H"], dims["W"]


def check_image_input(x: torch.Tensor, field: FieldInfo, name: str) -> None:
    """Raise one clear line when a batch does not match the image field the encoder was built for."""
    want_dtype = str(field.dtype)
    got_dtype = str(x.dtype).removeprefix("torch.")
    if tuple(x.shape[1:]) != tuple(field.shape) or got_dtype != want_dtype:
        raise DtkitError(
            f"image encoder {name!r} was built for images of shape {tuple(field.shape)} dtype {want_dtype}, "
            f"but got shape {tuple(x.shape[1:])} dtype {got_dtype}; feed the images the model was trained on "
            "(same size, layout and dtype) or train a new model on this data"
        )


def to_nchw(x: torch.Tensor, field: FieldInfo) -> torch.Tensor:
    """(N, *field.shape) in the field's layout -> (N, C, H, W) float, uint8 scaled to [0, 1]."""
    x = rearrange(x, _TO_NCHW[field.layout])
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


def _conv_plan(h: int, w: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) per conv layer for an (h, w) image.

    Large images (side >= 36, e.g. Atari's 84x84 or MiniGrid's 56x56) use the
    Nature-DQN stack. Smaller ones (MiniGrid's 7x7 grid) would collapse below 1x1
    under it, so they get 3x3 convs with padding that halve the map only while
    a side is 16 or more.
    """
    if min(h, w) >= NATURE_MIN_SIDE:
        return list(NATURE_CONVS)
    plan = []
    for _ in NATURE_CONVS:
        stride = 2 if min(h, w) >= 16 else 1
        plan.append((3, stride, 1))
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    return plan


def _conv_out(h: int, w: int, plan: list[tuple[int, int, int]]) -> tuple[int, int]:
    for k, s, p in plan:
        h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return h, w


@register_encoder("cnn")
class NatureCNN(Encoder):
    """Nature-DQN CNN: one image (or frame stack) -> one token.

    Conv 8x8/4 (32), 4x4/2 (64), 3x3/1 (64), each with ReLU, then a
    ``hidden``-wide ReLU layer (512 in the paper) and a linear map to ``d_model``.
    Small images get an adapted stack (see :func:`_conv_plan`).

    Args:
        channels: output channels of the three conv layers.
        hidden: width of the fully connected layer; 0 maps the conv features straight to d_model.

    Example:
        >>> enc = NatureCNN(FieldInfo((4, 84, 84), "uint8"), d_model=128)
        >>> enc(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape
        torch.Size([2, 1, 128])
    """

    def __init__(self, field: FieldInfo, d_model: int, channels: tuple[int, ...] | list[int] = (32, 64, 64), hidden: int = 512) -> None:
        super().__init__(field, d_model)
        self.n_tokens = type(self).n_tokens_for(field, {"channels": channels, "hidden": hidden})
        c, h, w = image_chw(field)
        plan = _conv_plan(h, w)
        layers: list[nn.Module] = []
        for out_c, (k, s, p) in zip(channels, plan):
            layers += [nn.Conv2d(c, out_c, k, s, p), nn.ReLU()]
            c = out_c
        self.convs = nn.Sequential(*layers, nn.Flatten())
        oh, ow = _conv_out(h, w, plan)
        flat = c * oh * ow
        self.head: nn.Module = (
            nn.Linear(flat, d_model) if hidden <= 0 else nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        )

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        _, h, w = image_chw(field)
        channels = params.get("channels", (32, 64, 64))
        if len(channels) != len(NATURE_CONVS) or min(channels) < 1:
            raise DtkitError(f"the 'cnn' encoder takes {len(NATURE_CONVS)} positive conv widths as channels, got {list(channels)}")
        oh, ow = _conv_out(h, w, _conv_plan(h, w))
        assert oh >= 1 and ow >= 1, (h, w)  # _conv_plan guarantees this
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.field, "cnn")
        feats = self.convs(to_nchw(x, self.field))  # (N, C' * H' * W')
        return self.head(feats).unsqueeze(1)  # (N, 1, D)


def _patch_size(field: FieldInfo, patch: int | list[int] | tuple[int, ...] | None, max_tokens: int) -> tuple[int, int]:
    """(ph, pw) from the ``patch`` param, or, when None, the smallest square patch that
    divides the image and gives at most ``max_tokens`` patches."""
    _, h, w = image_chw(field)
    if patch is None:
        for p in range(1, min(h, w) + 1):
            if h % p == 0 and w % p == 0 and (h // p) * (w // p) <= max_tokens:
                return p, p
        raise DtkitError(
            f"no square patch divides an image of {h}x{w} into at most {max_tokens} patches; "
            "set the 'patch' param (an int or [height, width]) or raise 'max_tokens'"
        )
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    if ph < 1 or pw < 1 or h % ph or w % pw:
        raise DtkitError(
            f"patch {ph}x{pw} does not tile an image of {h}x{w} (field shape {field.shape}); "
            f"choose a patch height dividing {h} and a width dividing {w}"
        )
    return ph, pw


@register_encoder("patch")
class PatchEncoder(Encoder):
    """ViT-style patches: one image -> one token per ``patch`` x ``patch`` patch.

    Each patch is flattened (all channels, frame stacks included) and projected
    linearly to ``d_model`` (Dosovitskiy et al., 2021). Patch positions need no
    embedding of their own here: each patch is its own slot in the spec, and the
    model adds a learned embedding per slot.

    Args:
        patch: patch side (int) or [height, width]; None picks the smallest square patch
            that divides the image into at most ``max_tokens`` patches.
        max_tokens: bound for the automatic patch size.

    Example:
        >>> enc = PatchEncoder(FieldInfo((84, 84, 3), "uint8"), d_model=64, patch=14)
        >>> enc(torch.zeros(2, 84, 84, 3, dtype=torch.uint8)).shape
        torch.Size([2, 36, 64])
    """

    def __init__(self, field: FieldInfo, d_model: int, patch: int | list[int] | None = None, max_tokens: int = 36) -> None:
        super().__init__(field, d_model)
        c, h, w = image_chw(field)
        self.ph, self.pw = _patch_size(field, patch, max_tokens)
        self.n_tokens = (h // self.ph) * (w // self.pw)
        self.proj = nn.Linear(c * self.ph * self.pw, d_model)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        _, h, w = image_chw(field)
        ph, pw = _patch_size(field, params.get("patch"), params.get("max_tokens", 36))
        return (h // ph) * (w // pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.field, "patch")
        img = to_nchw(x, self.field)  # (N, C, H, W)
        patches = rearrange(img, "n c (h ph) (w pw) -> n (h w) (ph pw c)", ph=self.ph, pw=self.pw)  # (N, n_tokens, ph*pw*C)
        return self.proj(patches)  # (N, n_tokens, D)
