"""The fixed-rate masked-LM objective (train.objective=mlm, train.mask_rate) and its compare arms (mlm-P)."""

import pytest
import torch

from revcurse.compare import arm_config, parse_arms
from revcurse.config import load_config
from revcurse.errors import InputError
from revcurse.objectives import DEFAULT_MASK_RATE, IGNORE_INDEX, is_masked, mask_tokens
from revcurse.sections import TrainConfig


@pytest.mark.parametrize("rate", [0.15, 0.4, 0.85])
def test_fixed_rate_masks_that_fraction_of_every_sequence(rate):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, 50, (300, 41))
    attention_mask = torch.ones_like(input_ids)
    masked, labels = mask_tokens(input_ids, attention_mask, mask_id=3, generator=generator, rate=rate)
    chosen = masked == 3
    assert not chosen[:, 0].any() and chosen.any(-1).all()
    assert torch.equal(labels[chosen], input_ids[chosen]) and (labels[~chosen] == IGNORE_INDEX).all()
    per_row = chosen[:, 1:].float().mean(-1)
    assert abs(per_row.mean().item() - rate) < 0.02
    # fixed: every row near the rate (binomial spread of 40 tokens), unlike MLM-U's U(0, 1) draw
    assert (per_row - rate).abs().max().item() < 0.3
    uniform, _ = mask_tokens(input_ids, attention_mask, 3, torch.Generator().manual_seed(0))
    assert (uniform == 3)[:, 1:].float().mean(-1).std().item() > 2 * per_row.std().item()


def test_mask_rate_belongs_to_mlm_only():
    assert TrainConfig(objective="mlm").mask_rate is None and DEFAULT_MASK_RATE == 0.15
    assert TrainConfig(objective="mlm", mask_rate=0.4).mask_rate == 0.4
    for objective in ("causal", "mlm-u"):
        with pytest.raises(ValueError, match="train.mask_rate is the rate of train.objective=mlm"):
            TrainConfig(objective=objective, mask_rate=0.4)
    for rate in (0.0, 1.0):
        with pytest.raises(ValueError):
            TrainConfig(objective="mlm", mask_rate=rate)
    assert is_masked("mlm") and is_masked("mlm-u") and not is_masked("causal")


def test_fixed_rate_arms_configure_the_objective():
    base = load_config(None, [])
    assert parse_arms("mlm-15,mlm-40,mlm-85,mlm-u") == ["mlm-15", "mlm-40", "mlm-85", "mlm-u"]
    for arm, rate in (("mlm-15", 0.15), ("mlm-85", 0.85)):
        train = arm_config(base, arm).train
        assert (train.objective, train.mask_rate) == ("mlm", rate)
    assert arm_config(base, "reverse-token+mlm-40").cures == ["reverse-token"]
    assert arm_config(base, "mlm-u").train.mask_rate is None


@pytest.mark.parametrize(("arm", "message"), [
    ("mlm-0", "from 1 to 99"), ("mlm-100", "from 1 to 99"), ("mlm-x", "mlm-P"), ("mlm-15+mlm-u", "two objectives"),
])
def test_wrong_fixed_rate_arms_are_clear_errors(arm, message):
    with pytest.raises(InputError, match=message):
        parse_arms(arm)


def test_an_arm_that_breaks_the_train_section_is_an_input_error():
    with pytest.raises(InputError, match="arm 'mlm-15'.*packing"):
        arm_config(load_config(None, ["train.packing=64"]), "mlm-15")
