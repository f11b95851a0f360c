"""Training objectives: what one micro-batch's loss is. ``train.py`` runs the loop; this says what it minimises.

- ``causal``: next-token cross-entropy, summed over the micro-batch's label tokens and divided by the whole
  step's, so one step's gradient is the mean over the batch however it is split;
- ``mlm-u`` (Kitouni et al. 2024): a bidirectional model predicts tokens masked at a rate drawn per sequence
  from U(0, 1);
- ``mlm``: the same model and loss at one fixed rate (``train.mask_rate``, BERT's 0.15 by default), the
  fixed-rate baseline Kitouni et al. compare MLM-U with (15, 40 and 85%).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.sections import MASKED_OBJECTIVES

IGNORE_INDEX = -100  # label value that cross-entropy skips
DEFAULT_MASK_RATE = 0.15  # train.objective=mlm without train.mask_rate: BERT's rate


def is_masked(objective: str) -> bool:
    """Whether ``objective`` trains (and so probing must ask) a bidirectional mask-filling model."""
    return objective in MASKED_OBJECTIVES


def mask_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_id: int, generator: torch.Generator,
    rate: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-LM masking: each token but BOS masked with probability r, at least one per sequence; r is
    ``rate`` for every sequence, or (None) drawn per sequence from U(0, 1), MLM-U (Kitouni et al. 2024).
    Returns (masked input ids, labels: the original at masked places)."""
    rows, width = input_ids.shape
    # Drawn on the CPU generator either way (one random stream for both objectives, the same draws on any
    # device), then moved to the batch's device.
    drawn = torch.rand(rows, 1, generator=generator)
    rate = (drawn if rate is None else torch.full((rows, 1), rate)).to(input_ids.device)
    maskable = attention_mask.bool().clone()
    maskable[:, 0] = False  # BOS stays: it marks where the text starts
    chosen = (torch.rand(rows, width, generator=generator).to(input_ids.device) < rate) & maskable
    for row in torch.nonzero(~chosen.any(-1)).flatten().tolist():
        candidates = torch.nonzero(maskable[row]).flatten()
        pick = int(torch.randint(len(candidates), (1,), generator=generator))
        chosen[row, candidates[pick]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return torch.where(chosen, torch.full_like(input_ids, mask_id), input_ids), labels


def masked_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor], mask_id: int, generator: torch.Generator,
                rate: float | None = None):
    """Cross-entropy on masked positions of a bidirectional model; each position predicts its own token."""
    masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], mask_id, generator, rate)
    logits = model(input_ids=masked, attention_mask=batch["attention_mask"], use_cache=False).logits
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def objective_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor], objective: str,
                   tokenizer: PreTrainedTokenizerBase, generator: torch.Generator, step_items: int,
                   micro_batches: int, mask_rate: float | None = None) -> torch.Tensor:
    """One micro-batch's share of the step's loss under ``objective`` (``train.objective``; ``mask_rate``:
    ``train.mask_rate`` of ``mlm``)."""
    if is_masked(objective):
        # Random masks: the targets are not known ahead, so micro-batches weigh equally.
        rate = None if objective == "mlm-u" else (DEFAULT_MASK_RATE if mask_rate is None else mask_rate)
        return masked_loss(model, batch, tokenizer.mask_token_id, generator, rate) / micro_batches
    # Sum over this micro-batch's tokens / the whole step's tokens (x N: DDP averages).
    return model(**batch, num_items_in_batch=step_items, use_cache=False).loss
