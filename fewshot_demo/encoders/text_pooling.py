"""Pooling token states into sentence embeddings, over texts read in several windows, and packing
the windows' token ids so they index by text like features do."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_text(rows: Tensor, owner: Tensor | None) -> Tensor:
    """Sum (m, ...) per-window rows into (n, ...) per-text rows; ``owner`` None means one window per text."""
    if owner is None:
        return rows
    n_texts = int(owner.max()) + 1 if len(owner) else 0
    return rows.new_zeros((n_texts, *rows.shape[1:])).index_add_(0, owner.to(rows.device), rows)


def mean_pool(hidden: Tensor, attention_mask: Tensor, owner: Tensor | None = None) -> Tensor:
    """Average token states over the real (unmasked) tokens, of all windows of a text.

    Args:
        hidden: (m, seq_len, d) hidden states of m windows.
        attention_mask: (m, seq_len) 1 for real tokens, 0 for padding.
        owner: (m,) the text each window belongs to (0..n-1, every text at least once), or None when
            each window is a whole text.

    Returns:
        (n, d) mean of each text's real tokens; padding never contributes.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (m, seq_len, 1)
    return _per_text((hidden * mask).sum(dim=1), owner) / _per_text(mask.sum(dim=1), owner).clamp_min(1e-9)


def cls_pool(hidden: Tensor, attention_mask: Tensor, owner: Tensor | None = None) -> Tensor:
    """Return the (n, d) state of the first ([CLS]) token; over several windows, their mean weighted by
    each window's number of tokens (as ``mean_pool`` weighs them)."""
    if owner is None:
        return hidden[:, 0]
    tokens = attention_mask.sum(dim=1, keepdim=True).to(hidden.dtype)  # (m, 1)
    return _per_text(hidden[:, 0] * tokens, owner) / _per_text(tokens, owner).clamp_min(1e-9)


def pool(
    hidden: Tensor,
    attention_mask: Tensor,
    pooling: str = "mean",
    middle: Tensor | None = None,
    owner: Tensor | None = None,
) -> Tensor:
    """Pool (m, seq_len, d) token states of m windows into L2-normalised embeddings of n texts.

    Args:
        hidden: (m, seq_len, d) last hidden states.
        attention_mask: (m, seq_len).
        pooling: "mean", "cls" or "layers".
        middle: (m, seq_len, d) states of the middle layer; required for "layers".
        owner: (m,) the text of each window (see ``mean_pool``), or None for one window per text.

    Returns:
        (n, d) embeddings, or (n, 2 * d) for "layers": the mean-pooled last and middle layers, each
        L2-normalised, concatenated and scaled by 1/sqrt(2) so the whole vector has unit norm.
    """
    if pooling == "layers":
        if middle is None:
            raise ValueError("'layers' pooling needs the middle layer's states as well as the last")
        return layers_pool(hidden, middle, attention_mask, owner)
    pooled = mean_pool(hidden, attention_mask, owner) if pooling == "mean" else cls_pool(hidden, attention_mask, owner)
    return F.normalize(pooled, dim=-1)


def layers_pool(last: Tensor, middle: Tensor, attention_mask: Tensor, owner: Tensor | None = None) -> Tensor:
    """Mean-pool two (m, seq_len, d) layers, L2-normalise each, concatenate: (n, 2 * d) of unit norm."""
    parts = [F.normalize(mean_pool(states, attention_mask, owner), dim=-1) for states in (last, middle)]
    return torch.cat(parts, dim=-1) / 2**0.5


def window_numbers(owner: Tensor, n_texts: int) -> Tensor:
    """For (m,) ascending window owners, each window's number within its text (0 for the first)."""
    first = torch.searchsorted(owner, torch.arange(n_texts, device=owner.device))  # each text's first window
    return torch.arange(len(owner), device=owner.device) - first[owner]


def pack_tokens(input_ids: Tensor, attention_mask: Tensor, owner: Tensor | None = None) -> Tensor:
    """Stack the windows of each text into one (n, windows, 2, seq_len) int64 tensor, indexable by text
    like features. Texts with fewer windows than the longest are padded with all-zero windows.

    Args:
        input_ids, attention_mask: (m, seq_len) windows.
        owner: (m,) the text of each window, ascending (as ``TextEncoder.tokenize_windows`` returns
            them), or None for one window per text.
    """
    stacked = torch.stack([input_ids, attention_mask], dim=1).long()  # (m, 2, seq_len)
    if owner is None:
        return stacked.unsqueeze(1)
    n_texts = int(owner.max()) + 1 if len(owner) else 0
    slot = window_numbers(owner, n_texts)
    n_windows = int(slot.max()) + 1 if len(owner) else 1
    packed = stacked.new_zeros((n_texts, n_windows, *stacked.shape[1:]))
    packed[owner, slot] = stacked
    return packed


def unpack_tokens(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of ``pack_tokens``: the real windows, trimmed to the longest real row.

    Args:
        tokens: (n, windows, 2, seq_len) from ``TextEncoder.prepare("tokens", texts)``.

    Returns:
        (input_ids, attention_mask, owner): (m, L) ids and mask of the m real windows, L <= seq_len the
        longest window's length, and (m,) the text (0..n-1) each window belongs to.
    """
    if tokens.ndim != 4 or tokens.shape[2] != 2:
        raise ValueError(f"expected (n, windows, 2, seq_len) token tensors, got {tuple(tokens.shape)}")
    n_texts, n_windows = tokens.shape[:2]
    rows = tokens.reshape(n_texts * n_windows, *tokens.shape[2:])  # (n * windows, 2, seq_len)
    real = rows[:, 1].sum(dim=1) > 0  # every real window holds at least the special tokens
    owner = torch.arange(n_texts).repeat_interleave(n_windows)[real]
    rows = rows[real]
    length = max(int(rows[:, 1].sum(dim=1).max()), 1) if len(rows) else 1
    return rows[:, 0, :length], rows[:, 1, :length], owner
