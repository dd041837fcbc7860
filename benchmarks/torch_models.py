"""The course's models in PyTorch: the baselines jaxmusic is measured against.

Same structure and the same parameters as the Flax models in ``jaxmusic.models``
(so that :mod:`benchmarks.porting` maps one onto the other), written the way the
course's PyTorch code builds them, with PyTorch's own fast kernels (oneDNN on CPU,
cuDNN on GPU):

* :class:`LSTMBackbone` with ``packed=True``: the course helper's way,
  ``pack_padded_sequence`` -> ``nn.LSTM`` -> ``pad_packed_sequence`` -> the last
  valid step of the forward direction + step 0 of the backward direction.
  Exactly our semantics.
* :class:`LSTMBackbone` with ``packed=False``: the same ``nn.LSTM`` on the padded
  batch (PyTorch's fastest plain path, oneDNN's fused RNN on CPU), the same
  summary gathered from the padded outputs. Speed baseline only: its backward
  direction starts on the padding, so its latent differs from ours whenever a clip
  is shorter than the batch (not used by the parity tests with varied lengths).
* :class:`CNNBackbone`: 4 x (Conv -> BatchNorm -> ReLU -> MaxPool 2x2) on the
  spectrogram as a one-channel image, padded frames zeroed before every block,
  masked mean over the valid pooled time frames and mean over frequency.
* :class:`ASTBackbone`: the Audio Spectrogram Transformer as ``jaxmusic.models.ast``
  builds it (patch embedding, cls + dist tokens, pre-LN blocks with a key-padding
  mask through ``F.scaled_dot_product_attention``).

Each backbone maps ``(features [B, T, F], lengths [B])`` to a latent
``[B, feature_size]``; :class:`Classifier` puts a linear head on it.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


# --- masks (the same rules as jaxmusic.models.masks) ----------------------------------------

def padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``bool[B, steps]``: True on the valid frames ``t < length``."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def pooled_lengths(lengths: torch.Tensor, levels: int) -> torch.Tensor:
    """Valid frames after ``levels`` 2x max-pools: ``max(1, length // 2**levels)``."""
    return torch.clamp(lengths // (2**levels), min=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [B, T, ...]`` over T counting only ``mask [B, T]``."""
    m = mask.reshape(mask.shape + (1,) * (x.dim() - 2)).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def valid_patches(lengths: torch.Tensor, patch: int, stride: int, num_patches: int) -> torch.Tensor:
    """Valid time patches per example (a prefix): see ``masks.valid_patches``."""
    count = (torch.clamp(lengths, min=patch) - patch) // stride + 1
    return torch.clamp(count, 1, num_patches)


# --- LSTM ------------------------------------------------------------------------------------

class LSTMBackbone(nn.Module):
    """The course's (bi)LSTM; ``packed`` chooses the helper's packed path or plain padding."""

    def __init__(self, input_size: int, hidden_size: int = 128, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.1, packed: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.packed = packed
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.feature_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.packed:
            # The course helper: pack (lengths on the CPU), run, unpack to the batch's max length.
            packed = nn.utils.rnn.pack_padded_sequence(features, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        else:
            out, _ = self.lstm(features)
        return self.last_timestep(out, lengths)

    def last_timestep(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Forward output at ``length - 1`` (+ the backward output at step 0)."""
        index = (lengths.to(outputs.device) - 1).clamp(min=0)
        index = index.view(-1, 1, 1).expand(-1, 1, outputs.size(2))
        last = outputs.gather(1, index).squeeze(1)
        if not self.bidirectional:
            return last
        h = self.hidden_size
        return torch.cat([last[:, :h], outputs[:, 0, h:]], dim=-1)


# --- CNN -------------------------------------------------------------------------------------

class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose batch statistics (train mode) use the valid time frames only.

    ``mask [B, T]`` selects rows of ``x [B, C, T, F]``. The normalisation is the
    same formula as flax's ``BatchNorm(mask=...)`` (biased variance); the running
    statistics are updated PyTorch's way (momentum, unbiased variance). Without a
    mask, or in eval mode, it is ``nn.BatchNorm2d`` (oneDNN's fused kernel).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        m = mask[:, None, :, None].to(x.dtype)  # [B, 1, T, 1]
        count = m.sum() * x.shape[3]
        mean = (x * m).sum(dim=(0, 2, 3)) / count
        var = (x * x * m).sum(dim=(0, 2, 3)) / count - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
                self.num_batches_tracked.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class CNNBackbone(nn.Module):
    """4 x (Conv SAME -> BatchNorm -> ReLU -> MaxPool 2x2) on ``[B, 1, T, F]``.

    The same rules as ``jaxmusic.models.cnn``: padded frames (``t >=
    max(1, length // 2**k)`` at block ``k``) are zeroed at the input of every block
    and after the last one; time pools in floor mode, frequency in ceil mode; the
    latent is the mean over frequency and the masked mean over valid pooled frames.

    ``masked_batch_norm=True`` computes BatchNorm's batch statistics over the valid
    frames only (jaxmusic's semantics, used by the parity tests); ``False`` is the
    course's plain ``nn.BatchNorm2d`` over every frame (oneDNN's fused kernel,
    the faster baseline). ``channels_last`` runs the convolutions in NHWC, which
    oneDNN prefers on CPU.
    """

    def __init__(self, channels=(16, 32, 64, 128), kernel_size: int = 3,
                 masked_batch_norm: bool = False, channels_last: bool = False,
                 momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("SAME padding is symmetric only for odd kernel sizes")
        self.masked_batch_norm = masked_batch_norm
        self.channels_last = channels_last
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.convs.append(nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2))
            self.norms.append(MaskedBatchNorm2d(c, eps=eps, momentum=momentum))
            c_in = c
        self.feature_size = int(channels[-1])

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = features[:, None]  # [B, 1, T, F]: H = time, W = frequency
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        valid = padding_mask(pooled_lengths(lengths, 0), x.shape[2])
        x = x * valid[:, None, :, None].to(x.dtype)
        for level, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            x = norm(x, valid if self.masked_batch_norm else None)
            x = F.relu(x)
            if x.shape[3] % 2:  # ceil mode over frequency only
                x = F.pad(x, (0, 1), value=float("-inf"))
            x = F.max_pool2d(x, 2)
            valid = padding_mask(pooled_lengths(lengths, level + 1), x.shape[2])
            x = x * valid[:, None, :, None].to(x.dtype)
        return masked_mean(x.mean(dim=3).transpose(1, 2), valid)  # [B, T_k, C] -> [B, C]


# --- AST -------------------------------------------------------------------------------------

class EncoderBlock(nn.Module):
    """Pre-LN block (timm's ``Block``): fused qkv, SDPA with a key-padding mask, exact-GELU MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 query_tokens: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.query_tokens = query_tokens
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        if self.query_tokens is not None:
            x, q = x[:, : self.query_tokens], q[:, :, : self.query_tokens]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        y = y.transpose(1, 2).reshape(batch, x.shape[1], dim)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm2(x))))))


class ASTBackbone(nn.Module):
    """AST as ``jaxmusic.models.ast.ASTBackbone`` builds it (same tokens, order and masks).

    As in jaxmusic, the last block updates only the class and distillation tokens
    (they are all the latent reads), so both frameworks do the same work.
    """

    def __init__(self, input_fdim: int, input_tdim: int, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 patch_size: int = 16, fstride: int = 10, tstride: int = 10):
        super().__init__()
        self.patch_size, self.fstride, self.tstride = patch_size, fstride, tstride
        self.input_fdim = input_fdim
        f_max, t_max = _patch_grid(input_fdim, input_tdim, patch_size, fstride, tstride)
        self.patch_embed = nn.Conv2d(1, embed_dim, patch_size, stride=(fstride, tstride))
        self.pos_embed_patches = nn.Parameter(torch.zeros(f_max, t_max, embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(embed_dim))
        self.pos_embed_tokens = nn.Parameter(torch.zeros(2, embed_dim))
        for p in (self.pos_embed_patches, self.cls_token, self.dist_token, self.pos_embed_tokens):
            nn.init.trunc_normal_(p, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([
            EncoderBlock(embed_dim, num_heads, mlp_ratio, dropout,
                         query_tokens=2 if i == depth - 1 else None) for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.feature_size = embed_dim

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, steps, num_features = features.shape
        f_dim, t_dim = _patch_grid(num_features, steps, self.patch_size, self.fstride, self.tstride)
        patches = self.patch_embed(features.transpose(1, 2)[:, None])  # [B, D, f, t]
        patches = patches.permute(0, 3, 2, 1)  # [B, t, f, D]: time-major tokens
        patches = patches + self.pos_embed_patches[:, :t_dim].transpose(0, 1)[None]
        patches = patches.reshape(batch, t_dim * f_dim, -1)
        tokens = torch.stack([self.cls_token, self.dist_token]) + self.pos_embed_tokens
        x = torch.cat([tokens[None].expand(batch, -1, -1), patches], dim=1)
        x = self.drop(x)
        valid_t = valid_patches(lengths, self.patch_size, self.tstride, t_dim)
        key_mask = padding_mask(2 + valid_t * f_dim, x.shape[1])[:, None, None, :]  # [B, 1, 1, N]
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.norm(x[:, :2])
        return (x[:, 0] + x[:, 1]) / 2


def _patch_grid(fdim: int, tdim: int, patch: int, fstride: int, tstride: int) -> tuple[int, int]:
    return (fdim - patch) // fstride + 1, (tdim - patch) // tstride + 1


# --- heads -----------------------------------------------------------------------------------

class Classifier(nn.Module):
    """A backbone and a linear classifier on its latent."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_size, num_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(features, lengths))
