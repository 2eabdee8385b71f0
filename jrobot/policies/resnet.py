"""torchvision-exact ResNet18/34 trunks (conv1 ... layer4, no avgpool/fc) in Flax NNX, channel-last.

Used by ACT (frozen batch norm, LeRobot `FrozenBatchNorm2d`) and Diffusion Policy (GroupNorm(C//16) in
0.4.4, trainable batch norm at LeRobot HEAD with `use_group_norm=False`). Exactness matters for parity:
- convolutions use torch's symmetric padding (3 for the 7x7 stem, 1 for 3x3), never "SAME", which pads
  asymmetrically for stride 2 on even inputs;
- the 3x3/2 max pool pads with -inf (padding 1);
- frozen BN computes `x * scale + shift` with `scale = w * rsqrt(var + 1e-5)`, `shift = b - mean*scale`,
  the same folding torchvision uses; GroupNorm uses eps 1e-5 and the two-pass variance.
Input (B, H, W, 3) float, already normalized; output (B, H/32, W/32, 512).

State-dict layouts: torchvision / ACT names (`conv1`, `bn1`, `layer1.0.conv1`, ...) are the NNX paths;
Diffusion's `nn.Sequential(children[:-2])` layout (`0`, `1`, `4`..`7`) converts with
`sequential_to_named_keys` / `named_to_sequential_keys`.

ImageNet weights are never downloaded: `find_pretrained_weights` looks for a local file (an explicit
path, `$JROBOT_RESNET18_WEIGHTS` / `$JROBOT_RESNET34_WEIGHTS`, or torch's hub cache where torchvision
stores them) and `read_weights_file` reads `.safetensors` or a torch `.pth` zip without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies import winograd
from jrobot.policies.layers import IM2COL_MAX_POSITIONS, Buffer, max_pool, torch_conv
from jrobot.policies.lerobot.statedict import LoadReport, load_state_dict

NormKind = Literal["frozen_bn", "group_norm", "batch_norm"]
NORM_KINDS: tuple[str, ...] = ("frozen_bn", "group_norm", "batch_norm")
BN_EPS = 1e-5
BLOCKS_PER_LAYER = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
OUT_CHANNELS = 512

# torchvision's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu"), not truncated.
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # untruncated in jax >= 0.4


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def resnet_stage_hw(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial size of the maps layer1 .. layer4 of a torchvision ResNet18/34 compute on an (H, W) input."""

    def one(n: int) -> list[int]:
        n = _conv_out(_conv_out(n, 7, 2, 3), 3, 2, 1)  # conv1, maxpool
        sizes = [n]
        for _ in range(3):  # layer2..4 first blocks
            n = _conv_out(n, 3, 2, 1)
            sizes.append(n)
        return sizes

    return list(zip(one(height), one(width), strict=True))


def resnet_feature_hw(height: int, width: int) -> tuple[int, int]:
    """Spatial size of a torchvision ResNet18/34 layer4 map for an (H, W) input (stride 32, floor rules)."""
    return resnet_stage_hw(height, width)[-1]


class FrozenBatchNorm2d(nnx.Module):
    """torchvision `FrozenBatchNorm2d`: four buffers, never updated, not trained (LeRobot ACT)."""

    def __init__(self, num_features: int, eps: float = BN_EPS):
        self.eps = float(eps)
        self.weight = Buffer(jnp.ones((num_features,), jnp.float32))
        self.bias = Buffer(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = Buffer(jnp.zeros((num_features,), jnp.float32))
        self.running_var = Buffer(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
        shift = self.bias[...] - self.running_mean[...] * scale
        return x * scale.astype(x.dtype) + shift.astype(x.dtype)


class BatchNorm2d(nnx.Module):
    """torch `nn.BatchNorm2d` semantics (momentum 0.1, unbiased running variance, eps 1e-5).

    Train mode normalizes with the batch statistics and updates the running ones (`nnx.BatchStat`);
    eval mode uses the running statistics.
    """

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = 0.1):
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        if train:
            xf = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            mean = xf.mean(axes)
            var = jnp.mean(jnp.square(xf - mean), axes)
            n = int(np.prod([x.shape[a] for a in axes]))
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean[...] + m * jax.lax.stop_gradient(mean)
            unbiased = var * (n / max(n - 1, 1))
            self.running_var[...] = (1 - m) * self.running_var[...] + m * jax.lax.stop_gradient(unbiased)
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        else:
            mean, var = self.running_mean[...], self.running_var[...]
        y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + self.eps).astype(x.dtype)
        return y * self.weight[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


def make_norm(kind: NormKind, num_features: int, *, rngs: nnx.Rngs, dtype: Any = None) -> nnx.Module:
    """The norm layer for one ResNet position. GroupNorm uses C//16 groups, as LeRobot Diffusion does."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(num_features)
    if kind == "group_norm":
        return nnx.GroupNorm(
            num_features,
            num_groups=num_features // 16,
            epsilon=BN_EPS,
            use_fast_variance=False,
            dtype=dtype,
            rngs=rngs,
        )
    if kind == "batch_norm":
        return BatchNorm2d(num_features)
    raise ValueError(f"resnet norm must be one of {NORM_KINDS}, got {kind!r}")


def apply_norm(norm: nnx.Module, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if isinstance(norm, FrozenBatchNorm2d | BatchNorm2d):
        return norm(x, train=train)
    return norm(x)


class BasicBlock(nnx.Module):
    """`relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)`, identity = downsample(x) when shapes change."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, norm: NormKind, *, rngs: nnx.Rngs, dtype: Any = None
    ):
        def conv(i, o, k, s, p):
            return torch_conv(
                i,
                o,
                k,
                stride=s,
                padding=p,
                use_bias=False,
                kernel_init=_conv_init,
                dtype=dtype,
                matmul_weight_grad=True,
                winograd=True,
                rngs=rngs,
            )

        self.conv1 = conv(in_ch, out_ch, 3, stride, 1)
        self.bn1 = make_norm(norm, out_ch, rngs=rngs, dtype=dtype)
        self.conv2 = conv(out_ch, out_ch, 3, 1, 1)
        self.bn2 = make_norm(norm, out_ch, rngs=rngs, dtype=dtype)
        if stride != 1 or in_ch != out_ch:
            self.downsample = nnx.List(
                [conv(in_ch, out_ch, 1, stride, 0), make_norm(norm, out_ch, rngs=rngs, dtype=dtype)]
            )
        else:
            self.downsample = None

    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        identity = x
        out = jax.nn.relu(apply_norm(self.bn1, self.conv1(x), train))
        out = apply_norm(self.bn2, self.conv2(out), train)
        if self.downsample is not None:
            identity = apply_norm(self.downsample[1], self.downsample[0](x), train)
        return jax.nn.relu(out + identity)


class ResNet(nnx.Module):
    """ResNet18 (depth 18) or ResNet34 trunk up to layer4; attribute names are torchvision's."""

    def __init__(self, depth: int = 18, norm: NormKind = "frozen_bn", *, rngs: nnx.Rngs, dtype: Any = None):
        if depth not in BLOCKS_PER_LAYER:
            raise ValueError(
                f"resnet depth {depth} is not supported (BasicBlock ResNets only: {sorted(BLOCKS_PER_LAYER)}); "
                "ResNet50+ use Bottleneck blocks with 2048 output channels"
            )
        if norm not in NORM_KINDS:
            raise ValueError(f"resnet norm must be one of {NORM_KINDS}, got {norm!r}")
        self.depth, self.norm_kind, self.dtype = depth, norm, dtype
        self.conv1 = torch_conv(
            3,
            64,
            7,
            stride=2,
            padding=3,
            use_bias=False,
            kernel_init=_conv_init,
            dtype=dtype,
            matmul_weight_grad=True,
            rngs=rngs,
        )
        self.bn1 = make_norm(norm, 64, rngs=rngs, dtype=dtype)
        in_ch = 64
        for i, (n_blocks, ch) in enumerate(zip(BLOCKS_PER_LAYER[depth], (64, 128, 256, 512)), start=1):
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (b == 0 and i > 1) else 1
                blocks.append(BasicBlock(in_ch, ch, stride, norm, rngs=rngs, dtype=dtype))
                in_ch = ch
            setattr(self, f"layer{i}", nnx.List(blocks))

    @property
    def out_channels(self) -> int:
        return OUT_CHANNELS

    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        """(B, H, W, 3) normalized float -> (B, ceil(H/32), ceil(W/32), 512)."""
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"resnet expects (B, H, W, 3) channel-last images, got shape {tuple(x.shape)}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        x = jax.nn.relu(apply_norm(self.bn1, self.conv1(x), train))
        x = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        for i in range(1, 5):
            for block in getattr(self, f"layer{i}"):
                x = block(x, train=train)
        return x


def lay_out_winograd(resnet: ResNet, image_hws: Sequence[tuple[int, int]]) -> int:
    """For inference on the CPU: swap the 3x3 stride-1 convolutions of every layer whose maps are
    larger than `IM2COL_MAX_POSITIONS` on all these (H, W) images for `winograd.WinogradConv`s;
    returns how many. Smaller maps already take the im2col matmul, and there (a 512-channel layer4 on
    3x4 maps) the Winograd form's kernels, 16/9 as large, cost more to read than its matmuls save."""
    if not image_hws:
        return 0
    stages = [resnet_stage_hw(h, w) for h, w in image_hws]
    swapped = 0
    for i in range(4):
        if min(hw[i][0] * hw[i][1] for hw in stages) > IM2COL_MAX_POSITIONS[2]:
            swapped += winograd.lay_out_winograd(getattr(resnet, f"layer{i + 1}"))
    return swapped


# ---------------------------------------------------------------------------------------------------
# state-dict layouts
SEQUENTIAL_TO_NAMED = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
NAMED_TO_SEQUENTIAL = {v: k for k, v in SEQUENTIAL_TO_NAMED.items()}


def _rename(sd: Mapping[str, Any], prefix: str, table: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key.startswith(prefix):
            head, _, rest = key[len(prefix) :].partition(".")
            if head in table:
                key = f"{prefix}{table[head]}.{rest}"
        out[key] = value
    return out


def sequential_to_named_keys(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`<prefix>0.weight` -> `<prefix>conv1.weight`, `<prefix>4.0.bn1...` -> `<prefix>layer1.0.bn1...`.

    Diffusion stores its trunk as `nn.Sequential(*children(resnet18)[:-2])` (indices 0 conv1, 1 bn1,
    2 relu, 3 maxpool, 4..7 layer1..4). Keys outside `prefix` pass through unchanged.
    """
    return _rename(sd, prefix, SEQUENTIAL_TO_NAMED)


def named_to_sequential_keys(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Inverse of `sequential_to_named_keys` (for writing Diffusion-layout state dicts)."""
    return _rename(sd, prefix, NAMED_TO_SEQUENTIAL)


# ---------------------------------------------------------------------------------------------------
# pretrained ImageNet weights (local files only)
TORCHVISION_WEIGHTS: dict[str, tuple[int, str]] = {
    "ResNet18_Weights.IMAGENET1K_V1": (18, "resnet18-f37072fd.pth"),
    "ResNet18_Weights.DEFAULT": (18, "resnet18-f37072fd.pth"),
    "ResNet34_Weights.IMAGENET1K_V1": (34, "resnet34-b627a593.pth"),
    "ResNet34_Weights.DEFAULT": (34, "resnet34-b627a593.pth"),
}


def _torch_hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home) / "hub" / "checkpoints"
    cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(cache) / "torch" / "hub" / "checkpoints"


def find_pretrained_weights(weights: str, path: str | os.PathLike | None = None) -> Path:
    """Locate the local file for a torchvision weights name; raise with instructions when there is none.

    Order: `path` if given (must exist), `$JROBOT_RESNET{18,34}_WEIGHTS`, torch's hub cache
    (`$TORCH_HOME/hub/checkpoints/<file>`, where torchvision saved it if you ever used it).
    """
    if weights not in TORCHVISION_WEIGHTS:
        raise ValueError(
            f"pretrained backbone weights {weights!r} are not supported; known: {sorted(TORCHVISION_WEIGHTS)}"
        )
    depth, filename = TORCHVISION_WEIGHTS[weights]
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"pretrained backbone file {p} ({weights}) does not exist")
        return p
    env = f"JROBOT_RESNET{depth}_WEIGHTS"
    if os.environ.get(env):
        p = Path(os.environ[env]).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"${env}={p} does not exist")
        return p
    cached = _torch_hub_checkpoints() / filename
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"{weights} needs torchvision's ImageNet ResNet{depth} weights in a local file ({filename}, or a "
        f".safetensors with the same keys); jrobot never downloads them. Give the file as the policy "
        f"config's `pretrained_backbone_path`, or set ${env}, or put it at {cached}; or set "
        f"`pretrained_backbone_weights=None` to start from random weights."
    )


def read_weights_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict from `.safetensors` (safetensors' numpy API) or a torch `.pth`/`.pt` zip (no torch)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from jrobot.policies.lerobot.checkpoint import load_safetensors

        return load_safetensors(p)  # a corrupt file: ValueError naming it
    from jrobot.policies.lerobot.torch_zip import read_torch_zip

    return read_torch_zip(p)


def load_torchvision_weights(
    resnet: ResNet, sd: Mapping[str, Any], *, prefix: str = "", source: str = "torchvision weights"
) -> LoadReport:
    """Load a torchvision ResNet state dict (fc.* and num_batches_tracked ignored) into the trunk, strictly.

    GroupNorm trunks refuse, as LeRobot does: ImageNet batch-norm statistics do not fit GroupNorm.
    """
    if resnet.norm_kind == "group_norm":
        raise ValueError(
            "pretrained ImageNet weights cannot initialize a GroupNorm ResNet (LeRobot refuses too)"
        )
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else dict(sd)
    if resnet.norm_kind == "batch_norm":
        for key in [k for k in sd if k.endswith(".running_mean")]:
            sd.setdefault(key.replace(".running_mean", ".num_batches_tracked"), np.zeros((), np.int64))
    ignore = [r"^fc\.", r"\.num_batches_tracked$"] if resnet.norm_kind == "frozen_bn" else [r"^fc\."]
    return load_state_dict(resnet, sd, ignore=ignore, source=source)


def load_pretrained(resnet: ResNet, weights: str, path: str | os.PathLike | None = None) -> LoadReport:
    """`find_pretrained_weights` + `read_weights_file` + `load_torchvision_weights`; checks the depth."""
    depth, _ = TORCHVISION_WEIGHTS.get(weights, (None, None))
    if depth is not None and depth != resnet.depth:
        raise ValueError(f"{weights} is a ResNet{depth} but the trunk is ResNet{resnet.depth}")
    file = find_pretrained_weights(weights, path)
    return load_torchvision_weights(resnet, read_weights_file(file), source=str(file))
