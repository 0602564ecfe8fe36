"""Offline speech synthesis: espeak-ng in-process through ctypes, 16 kHz int16 clips.

The PyPI package ``espeakng-loader`` ships ``libespeak-ng`` and its voice data, so
nothing needs a system package or the network. espeak-ng is called in its
synchronous mode with a callback that collects the samples, from a freshly loaded
library for every clip so that a clip depends on its text and style alone (see ``_Espeak``).

Every clip has a fixed length (``n_samples``): the speech is placed at the start,
zero-padded at the end when shorter and cut at the end when longer, so the
observation space has one shape. Leading and trailing silence that espeak-ng adds
is trimmed first so a fixed length holds as much speech as possible.

Speaker variety comes from an accent (espeak-ng language voice) plus a voice
variant, a pitch and a speaking rate. Training and held-out voices share no
accent and no variant, so "held-out" means a speaker the model never heard.

Example:
    >>> clip = spoken_clip("red", VoiceStyle("en-us+m1", pitch=50, rate=170), n_samples=12000)  # doctest: +SKIP
    >>> clip.dtype, clip.shape  # doctest: +SKIP
    (dtype('int16'), (12000,))
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import functools
import itertools
import os
import shutil
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

__all__ = [
    "SAMPLE_RATE",
    "VoiceStyle",
    "TRAIN_VOICES",
    "HELDOUT_VOICES",
    "voices",
    "random_style",
    "synthesize",
    "fit_length",
    "add_noise",
    "spoken_clip",
]

SAMPLE_RATE = 16_000
_ESPEAK_RATE = 22_050  # espeak-ng's native rate; 16000 / 22050 = 320 / 441 exactly
_UP, _DOWN = 320, 441

# Accents x variants. The two sets are disjoint in both, so a held-out speaker differs in accent and timbre.
# Six training accents: with four (no Lancastrian or West Midlands), a DT heard the Scottish "blue" of the
# held-out set as "yellow" or "red" in 18% of episodes (spoken_goal_memory, 1,500 updates).
_TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
_TRAIN_VARIANTS = ("m1", "m2", "m3", "m5", "f1", "f2", "f3", "klatt")
_HELDOUT_ACCENTS = ("en-gb-scotland", "en-us-nyc")
_HELDOUT_VARIANTS = ("m4", "m6", "f4", "f5")
TRAIN_VOICES = tuple(f"{a}+{v}" for a, v in itertools.product(_TRAIN_ACCENTS, _TRAIN_VARIANTS))
HELDOUT_VOICES = tuple(f"{a}+{v}" for a, v in itertools.product(_HELDOUT_ACCENTS, _HELDOUT_VARIANTS))

PITCH_RANGE = (30, 70)  # espeak-ng pitch, 0-100 (50 is the voice's default)
RATE_RANGE = (140, 210)  # words per minute (175 is espeak-ng's default)


@dataclass(frozen=True)
class VoiceStyle:
    """One speaker: an espeak-ng voice name (``accent+variant``), a pitch (0-100) and a rate (words/min)."""

    voice: str
    pitch: int = 50
    rate: int = 175


def voices(split: str) -> tuple[str, ...]:
    """The voice names of ``split``: ``"train"`` or ``"heldout"``."""
    if split == "train":
        return TRAIN_VOICES
    if split == "heldout":
        return HELDOUT_VOICES
    raise ValueError(f"voice split {split!r} is unknown; use 'train' or 'heldout'")


def random_style(rng: np.random.Generator, split: str = "train") -> VoiceStyle:
    """A random speaker from ``split``, pitch and rate drawn uniformly from their ranges."""
    names = voices(split)
    return VoiceStyle(
        voice=names[int(rng.integers(len(names)))],
        pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
    )


if sys.platform == "win32":
    _close_library = _ctypes.FreeLibrary
else:
    _close_library = _ctypes.dlclose


class _Espeak:
    """espeak-ng loaded afresh for every clip, so a clip depends on its text and style alone.

    espeak-ng keeps synthesis state in C statics that no call resets: the pitch-flutter
    phase, the gain control, the breath-noise filters, and a noise generator that
    ``espeak_Initialize`` seeds from the clock. Synthesised in one loaded library, the
    same word in the same voice came out different on every call, and a breathy voice
    (f2, f3, f5) different in every process, so one recipe built twice differed in its
    audio. Unloading the library (``dlclose``) and loading it again resets every static;
    the noise generator is then seeded from the clip's own text and style. The library
    is loaded from a private copy so that no other user of ``espeakng-loader`` in the
    process holds it open, which would keep it loaded. Costs about 10 ms a clip; the
    clip cache (``synthesize``) pays it once per clip and process.
    """

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    _SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when the callback has had every sample
    _RATE, _PITCH = 1, 3  # espeak_PARAMETER values
    _POS_CHARACTER = 1

    def __init__(self) -> None:
        import espeakng_loader

        folder = Path(tempfile.mkdtemp(prefix="dtkit-espeak-"))
        # Removed at exit by this process only: a forked child (a vector env's worker) uses it too.
        atexit.register(_remove_if_owner, folder, os.getpid())
        original = Path(espeakng_loader.get_library_path())
        self._library = folder / original.name
        shutil.copyfile(original, self._library)
        self._data = espeakng_loader.get_data_path().encode()
        self._chunks: list[np.ndarray] = []
        self._callback = self._CALLBACK(self._collect)  # kept on self: ctypes must not free it
        self.lock = threading.Lock()

    def _load(self) -> ctypes.CDLL:
        lib = ctypes.CDLL(str(self._library))
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(self._SYNCHRONOUS, 0, self._data, 0)
        if rate != _ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng initialised at {rate} Hz, expected {_ESPEAK_RATE} Hz (espeakng-loader's build)")
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    @staticmethod
    def _unload(lib: ctypes.CDLL) -> None:
        lib.espeak_Terminate()
        _close_library(lib._handle)  # the last handle: the library and its statics go

    def _collect(self, wav: ctypes.Array, n: int, events: int) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = keep synthesising

    def synth(self, text: str, style: VoiceStyle) -> np.ndarray:
        with self.lock:
            lib = self._load()
            try:
                # Breath noise from a seed of the clip's own (crc32 is stable across processes, unlike hash()).
                lib.espeak_ng_SetRandSeed(zlib.crc32(f"{text}|{style.voice}|{style.pitch}|{style.rate}".encode()))
                if lib.espeak_SetVoiceByName(style.voice.encode()) != 0:
                    raise ValueError(f"espeak-ng has no voice {style.voice!r}; use one of {TRAIN_VOICES + HELDOUT_VOICES}")
                lib.espeak_SetParameter(self._RATE, int(style.rate), 0)
                lib.espeak_SetParameter(self._PITCH, int(style.pitch), 0)
                self._chunks = []
                data = text.encode()
                err = lib.espeak_Synth(data, len(data) + 1, 0, self._POS_CHARACTER, 0, 0, None, None)
                if err != 0:
                    raise RuntimeError(f"espeak-ng failed to synthesise {text!r} (error {err})")
                chunks, self._chunks = self._chunks, []
            finally:
                self._unload(lib)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _remove_if_owner(folder: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def _engine() -> _Espeak:
    return _Espeak()


@functools.lru_cache(maxsize=4096)
def _synth_cached(text: str, style: VoiceStyle) -> np.ndarray:
    wave = _engine().synth(text, style)  # int16 at 22.05 kHz
    wave = resample_poly(wave.astype(np.float32), _UP, _DOWN)
    loud = np.flatnonzero(np.abs(wave) > 64)  # trim espeak-ng's silences (about -54 dBFS)
    wave = wave[loud[0]: loud[-1] + 1] if loud.size else wave[:0]
    out = np.clip(np.rint(wave), -32768, 32767).astype(np.int16)
    out.setflags(write=False)  # cached and shared: callers copy before changing it
    return out


def synthesize(text: str, style: VoiceStyle) -> np.ndarray:
    """Speech for ``text`` in ``style``: int16 at 16 kHz, silences trimmed, any length.

    Clips are cached per (text, voice, pitch, rate), so environments that repeat
    a small vocabulary synthesise each combination once per process.
    """
    return _synth_cached(text, style)


def fit_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Speech at the start, zero-padded at the end or cut at the end to exactly ``n_samples``."""
    out = np.zeros(n_samples, np.int16)
    n = min(n_samples, wave.shape[0])
    out[:n] = wave[:n]
    return out


def add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """White noise over the whole clip (padding included) at ``snr_db`` below the speech's power."""
    x = wave.astype(np.float32)
    power = float(np.mean(x[x != 0] ** 2)) if np.any(x) else 1.0
    noise = rng.normal(0.0, np.sqrt(power / 10.0 ** (snr_db / 10.0)), size=x.shape)
    return np.clip(np.rint(x + noise), -32768, 32767).astype(np.int16)


def spoken_clip(text: str, style: VoiceStyle, n_samples: int, rng: np.random.Generator | None = None,
                snr_db: float | None = None) -> np.ndarray:
    """A fixed-length int16 clip of ``text`` spoken in ``style``, with white noise at ``snr_db`` when given."""
    clip = fit_length(synthesize(text, style), n_samples)
    if snr_db is not None:
        clip = add_noise(clip, rng if rng is not None else np.random.default_rng(), snr_db)
    return clip
