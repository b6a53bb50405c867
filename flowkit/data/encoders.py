"""Encoders between the data and a latent space: a flow trained on the codes of a pretrained autoencoder
(latent diffusion, Rombach et al. 2022; SD3, FLUX, DiT / SiT on ImageNet latents), its samples decoded.

An encoder is an ``Encoder`` (a frozen ``nn.Module``) registered under a name (``@register_encoder("name")`` or
the entry-point group ``flowkit.encoders``) and chosen with ``data.encoder=NAME[:ARG]`` (ARG its first option):

    ``latent_shape(data_shape)``  the shape of the codes of data of ``data_shape`` (a ConfigError if it takes none)
    ``encode(x) -> (mean, std)``  data in [-1, 1] (N, *data_shape) -> the posterior's mean and std, both in the
                                  latent space the flow is trained in (scaled); std None: a deterministic encoder
    ``decode(z) -> x``            codes -> data in [-1, 1]

Built in:

    ``space-to-depth[:factor]``   pixel unshuffle: (C, H, W) -> (C f^2, H / f, W / f), exact and invertible, no
                                  weights (f = 2): latent training checked against pixel training
    ``autoencoder-kl:PATH``       diffusers' ``AutoencoderKL`` (the SD / SDXL / SD3 / FLUX VAEs) from the folder PATH
    ``sd-vae:PATH``               (``save_pretrained``'s, or a pipeline's with ``subfolder=vae``) or a repo id found in
                                  the Hugging Face cache; never downloaded. Codes are
                                  z = scaling_factor (mean - shift_factor), the factors read from its config (SD 1/2:
                                  0.18215 and 0; SD3: 1.5305 and 0.0609), or given as ``scale`` / ``shift``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from torch import Tensor, nn

from flowkit.errors import ConfigError, ContractError
from flowkit.registry import Registry


class Encoder(nn.Module):
    """Base class of every encoder (module docstring)."""

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError


def check_encoder(name: str, obj: object) -> None:
    """The registration check beyond the base class: a subclass defines all three methods."""
    if inspect.isclass(obj):
        for method in ("latent_shape", "encode", "decode"):
            if getattr(obj, method) is getattr(Encoder, method):
                raise ContractError(f"encoder '{name}': {obj.__name__} does not define {method}()")


ENCODERS: Registry = Registry("encoder", "flowkit.encoders", check=check_encoder, base=Encoder)
register_encoder = ENCODERS.register


def build_encoder(text: str, data_shape: tuple[int, ...] | None = None) -> Encoder:
    """The frozen encoder ``data.encoder=text`` names (``name`` or ``name:ARG``), in eval mode on the CPU; with
    ``data_shape``, checked to take data of that shape."""
    encoder = ENCODERS.build(ENCODERS.parse(text, "data.encoder"))
    if data_shape is not None:
        encoder.latent_shape(tuple(data_shape))
    return encoder.eval().requires_grad_(False)


@register_encoder("space-to-depth")
class SpaceToDepth(Encoder):
    """Pixel unshuffle by ``factor``: (C, H, W) -> (C factor^2, H / factor, W / factor); exact, no weights."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor={factor} is out of range; expected >= 1")
        self.factor = factor

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        f = self.factor
        if len(data_shape) != 3 or data_shape[1] % f or data_shape[2] % f:
            raise ConfigError(f"data.encoder=space-to-depth:{f} takes images (C, H, W) with H and W divisible by {f}; "
                              f"the data has shape {tuple(data_shape)}")
        c, h, w = data_shape
        return (c * f * f, h // f, w // f)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return nn.functional.pixel_unshuffle(x, self.factor), None

    def decode(self, z: Tensor) -> Tensor:
        return nn.functional.pixel_shuffle(z, self.factor)


HF_HINT = ("nothing is downloaded at run time: on a machine with network, save it with "
           "`python -c \"from diffusers import AutoencoderKL; AutoencoderKL.from_pretrained('stabilityai/sd-vae-ft-mse')"
           ".save_pretrained('DIR')\"` and give data.encoder=autoencoder-kl:DIR (or copy the Hugging Face cache here)")


def hub_cache() -> str:
    """Where the Hugging Face cache is looked for (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")


@register_encoder("autoencoder-kl")
class AutoencoderKL(Encoder):
    """diffusers' AutoencoderKL from a folder or the Hugging Face cache (``pretrained``; never downloaded); codes
    scaled by its config's scaling_factor and shift_factor (or ``scale`` / ``shift``)."""

    def __init__(self, pretrained: str = "", subfolder: str = "", scale: float | None = None,
                 shift: float | None = None) -> None:
        super().__init__()
        self.vae = load_autoencoder_kl(pretrained, subfolder)
        config = self.vae.config
        self.scale = float(scale if scale is not None else getattr(config, "scaling_factor", None) or 1.0)
        self.shift = float(shift if shift is not None else getattr(config, "shift_factor", None) or 0.0)
        self.channels = int(config.latent_channels)
        self.in_channels = int(config.in_channels)
        self.downsampling = 2 ** (len(config.block_out_channels) - 1)

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        f = self.downsampling
        if len(data_shape) != 3 or data_shape[0] != self.in_channels or data_shape[1] % f or data_shape[2] % f:
            raise ConfigError(f"data.encoder=autoencoder-kl takes images ({self.in_channels}, H, W) with H and W "
                              f"divisible by {f}; the data has shape {tuple(data_shape)}")
        return (self.channels, data_shape[1] // f, data_shape[2] // f)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        posterior = self.vae.encode(x).latent_dist
        return (posterior.mean - self.shift) * self.scale, posterior.std * self.scale

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z / self.scale + self.shift).sample


register_encoder("sd-vae")(AutoencoderKL)


def load_autoencoder_kl(path: str, subfolder: str = "") -> nn.Module:
    """``diffusers.AutoencoderKL`` from the folder ``path`` or, for a repo id, from the Hugging Face cache only;
    a model that is not there is one line saying where it was looked for and how to put it there."""
    where = f"data.encoder=autoencoder-kl:{path}"
    if not path:
        raise ConfigError(f"{where}: give the folder of an AutoencoderKL (data.encoder=autoencoder-kl:DIR) or a repo "
                          f"id in the Hugging Face cache")
    try:
        from diffusers import AutoencoderKL as DiffusersAutoencoderKL
    except ImportError:
        raise ConfigError(f"{where} needs the diffusers package, which is not installed: "
                          f"pip install 'flowkit[latent]'") from None
    folder = Path(path).expanduser()
    local = folder.is_dir()
    if not local and (folder.is_absolute() or path.startswith(".") or path.count("/") != 1):
        raise ConfigError(f"{where}: no such folder (and not a repo id 'owner/name' to look up in the Hugging Face "
                          f"cache); {HF_HINT}")
    try:  # local_files_only: the hub is never asked
        return DiffusersAutoencoderKL.from_pretrained(str(folder) if local else path, subfolder=subfolder or None,
                                                      local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        looked = f"the folder {folder}" if local else f"the Hugging Face cache {hub_cache()} (repo id {path})"
        reason = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{where}: no AutoencoderKL in {looked}{f' (subfolder {subfolder})' if subfolder else ''} "
                          f"({reason}); {HF_HINT}") from None
