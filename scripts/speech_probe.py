"""Can the vision-and-speech binding be learned at all? A supervised probe, without the decision transformer.

With the agent in the centre (``start="centre"``), the first step of ``dtkit/SpokenGoTo-v0``
decides the episode: the expert's first move depends on the heard colour and on which
way the room is turned. This probe trains the
DT's own encoders (``cnn`` for the image, ``audio_conv`` for the clip) plus a small MLP
to predict that move, on fresh episodes drawn from the env every update (so no
memorising), and prints the accuracy on 300 episodes spoken by held-out voices:

    python scripts/speech_probe.py --home-share 0.25   # every room turned at random
    python scripts/speech_probe.py --home-share 0.5    # the env's default
    python scripts/speech_probe.py --colour onehot     # the colour given as a one-hot, no audio

It separates "the data or the DT pipeline is broken" from "the task is hard to learn":
measured here, the one-hot colour is bound to the image within 250 updates, the spoken
colour at ``--home-share 0.25`` not within 1,000 (a plateau: neither input alone says
anything about the move), and at 0.5 it reaches about 90% by 1,250 updates.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from dtkit.encoders import EncoderConfig, FieldInfo, build_encoder
from dtkit.envs.speech_tasks import SpokenGoToEnv


def draw(env: SpokenGoToEnv, n: int, rng: np.random.Generator, seed0: int | None = None) -> tuple[torch.Tensor, ...]:
    """n first observations (image, audio), the named colour and the expert's first move."""
    images, clips, colours, moves = [], [], [], []
    for i in range(n):
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)) if seed0 is None else seed0 + i)
        images.append(obs["image"])
        clips.append(obs["audio"])
        colours.append(int(env.colours[env.target]))
        moves.append(env.shortest_action(env.goal))
    return (torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(clips)), torch.tensor(colours), torch.tensor(moves))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home-share", type=float, default=0.5, help="share of rooms in the home orientation (env kwarg)")
    p.add_argument("--colour", choices=["audio", "onehot"], default="audio", help="hear the colour, or be told it as a one-hot")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--every", type=int, default=250, help="evaluate every this many updates")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    # The agent starts in the centre, so the first move alone says whether the object was found.
    train_env = SpokenGoToEnv(voices="train", home_share=args.home_share, start="centre")
    test_env = SpokenGoToEnv(voices="heldout", home_share=args.home_share, start="centre")
    d = 64
    image_enc = build_encoder(EncoderConfig("cnn"), FieldInfo((42, 42, 3), "uint8"), d)
    audio_enc = build_encoder(EncoderConfig("audio_conv", {"hop": 320}), FieldInfo((20000,), "int16", modality="audio"), d)
    told = nn.Embedding(4, d)
    n_audio = audio_enc.n_tokens
    head = nn.Sequential(nn.LayerNorm((n_audio + 1) * d), nn.Linear((n_audio + 1) * d, 128), nn.GELU(), nn.Linear(128, 4))
    modules = nn.ModuleList([image_enc, audio_enc, told, head])
    opt = torch.optim.AdamW(modules.parameters(), lr=6e-4, weight_decay=0.1)

    def predict(image: torch.Tensor, clip: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        heard = audio_enc(clip) if args.colour == "audio" else told(colour)[:, None].expand(-1, n_audio, -1)
        return head(torch.cat([heard, image_enc(image)], dim=1).flatten(1))

    test = draw(test_env, 300, rng, seed0=999_000)
    start = time.time()
    for step in range(args.steps + 1):
        image, clip, colour, move = draw(train_env, args.batch_size, rng)
        modules.train()
        loss = nn.functional.cross_entropy(predict(image, clip, colour), move)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            modules.eval()
            with torch.no_grad():
                acc = (predict(*test[:3]).argmax(-1) == test[3]).float().mean().item()
            print(f"update {step:5d}  loss {loss.item():.3f}  held-out first-move accuracy {acc:6.1%}  ({time.time() - start:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
