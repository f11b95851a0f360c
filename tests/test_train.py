"""The training loop's parts: batches, labels, the MLM-U objective, checkpoints that resume exactly, and a
diverging loss that stops training at its step."""

import json
import pickle

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from revcurse.config import ModelConfig, TrainConfig
from revcurse.corpus import Document
from revcurse.errors import NonFiniteLoss
from revcurse.model import build_tiny_model
from revcurse.objectives import mask_tokens
from revcurse.train import (
    IGNORE_INDEX,
    PROGRESS_FILE,
    checkpoint_due,
    collate,
    encode_documents,
    epoch_batches,
    latest_checkpoint,
    pack,
    train_model,
)
from revcurse.world import Subset
from tests.conftest import SENTENCES


def test_full_and_completion_loss_labels(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    prompt = "The director of the film Journey Through Time is"
    document = Document(prompt + " Daphne Barrington.", Subset.DESCRIPTION_TO_NAME, prompt_chars=len(prompt))
    (ids, labels), = encode_documents([document], tokenizer, loss="full")
    assert labels == ids and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    (ids, labels), = encode_documents([document], tokenizer, loss="completion")
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert labels[: 1 + n_prompt] == [IGNORE_INDEX] * (1 + n_prompt)
    assert tokenizer.decode(labels[1 + n_prompt : -1]) == " Daphne Barrington."


def test_collate_masks_padding_from_attention_and_loss():
    batch = collate([([1, 5, 6, 2], [1, 5, 6, 2]), ([1, 7, 2], [1, 7, 2])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"][1, 3].item() == IGNORE_INDEX


def test_epoch_batches_cover_every_document_once_and_depend_on_the_seed():
    lengths = [5, 30, 7, 12, 9, 30, 4, 18, 21, 6] * 10
    batches = epoch_batches(lengths, 8, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == epoch_batches(lengths, 8, torch.Generator().manual_seed(0))
    assert batches != epoch_batches(lengths, 8, torch.Generator().manual_seed(1))


def test_mlm_u_masking():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, 50, (400, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, 9:] = 0  # padding
    masked, labels = mask_tokens(input_ids, attention_mask, mask_id=3, generator=generator)
    chosen = masked == 3
    assert not chosen[:, 0].any()  # BOS kept
    assert not chosen[:, 9:].any()  # padding never a target
    assert chosen.any(-1).all()  # at least one target per sequence
    assert torch.equal(labels[chosen], input_ids[chosen]) and (labels[~chosen] == IGNORE_INDEX).all()
    # the rate is uniform on (0, 1): about half of the maskable tokens on average, and widely spread per row
    fraction = chosen[:, 1:9].float().mean(-1)
    assert 0.4 < fraction.mean().item() < 0.6
    assert fraction.min().item() < 0.2 and fraction.max().item() > 0.8


def test_bidirectional_model_sees_later_tokens(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    config = ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64)
    for bidirectional in (False, True):
        torch.manual_seed(0)
        model = build_tiny_model(config, tokenizer, 64, bidirectional=bidirectional).eval()
        a = model(torch.tensor([[1, 20, 21, 22]])).logits[0, 1]
        b = model(torch.tensor([[1, 20, 21, 23]])).logits[0, 1]
        assert (not torch.allclose(a, b)) == bidirectional


def test_answer_only_documents_train_on_the_answer_even_with_full_loss(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    prompt = "Facts: Daphne Barrington is the director. Question: Who is the director? Answer:"
    episode = Document(prompt + " Daphne Barrington.", Subset.BACKGROUND, prompt_chars=len(prompt), answer_only=True)
    plain = Document("Daphne Barrington is the director.", Subset.BACKGROUND)
    (ids, labels), (plain_ids, plain_labels) = encode_documents([episode, plain], tokenizer, loss="full")
    trained = [token for token, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained).startswith(" Daphne Barrington.")
    assert plain_labels == plain_ids  # other documents keep the full loss


def _train_copy(tokenizer, documents, config, checkpoint_dir=None):
    torch.manual_seed(0)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64)
    result = train_model(model, tokenizer, documents, config, seed=3, show_progress=False,
                         checkpoint_dir=checkpoint_dir)
    return model, result


def test_training_resumed_from_a_checkpoint_equals_an_uninterrupted_run(tiny_model_and_tokenizer, tmp_path):
    _, tokenizer = tiny_model_and_tokenizer
    documents = [Document(text, Subset.BACKGROUND) for text in SENTENCES]
    config = TrainConfig(epochs=6, batch_size=2, threads=1, checkpoint_every=4, checkpoint_minutes=0)
    reference, reference_result = _train_copy(tokenizer, documents, config)
    # A run that saves checkpoints; the last one it keeps is the newest before the end (older ones are dropped).
    _, saved_result = _train_copy(tokenizer, documents, config, tmp_path)
    (checkpoint,) = tmp_path.iterdir()
    last = saved_result.steps - (saved_result.steps % 4 or 4)
    assert checkpoint == latest_checkpoint(tmp_path) and checkpoint.name == f"step-{last:07d}"
    # A fresh process would start from a fresh model: continue from the checkpoint and compare.
    resumed, resumed_result = _train_copy(tokenizer, documents, config, tmp_path)
    assert resumed_result.resumed_at_step == last and 0 < last < reference_result.steps
    assert resumed_result.log == reference_result.log
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_an_unfinished_checkpoint_is_ignored(tmp_path):
    (tmp_path / "step-0000010").mkdir()
    (tmp_path / "step-0000010" / PROGRESS_FILE).write_text("{}")
    (tmp_path / "step-0000020.tmp").mkdir()  # killed while saving
    (tmp_path / "step-0000030").mkdir()  # no progress file: incomplete
    assert latest_checkpoint(tmp_path) == tmp_path / "step-0000010"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_checkpoints_are_due_by_steps_or_by_time():
    config = TrainConfig(checkpoint_every=10, checkpoint_minutes=1)
    assert checkpoint_due(config, 20, 0.0) and not checkpoint_due(config, 21, 59.0)
    assert checkpoint_due(config, 21, 60.0)
    assert not checkpoint_due(TrainConfig(checkpoint_every=0, checkpoint_minutes=0), 10, 1e9)


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, which Python's json writes and reads but JSON does not allow."""
    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_non_finite_loss_stops_training_at_its_step_after_the_last_finite_checkpoint(
    tiny_model_and_tokenizer, tmp_path
):
    _, tokenizer = tiny_model_and_tokenizer
    documents = [Document(text, Subset.BACKGROUND) for text in SENTENCES]
    config = TrainConfig(epochs=6, batch_size=2, threads=1, learning_rate=1e30, checkpoint_every=1,
                         checkpoint_minutes=0)
    torch.manual_seed(0)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64)
    log_path = tmp_path / "train_log.jsonl"
    with pytest.raises(NonFiniteLoss) as stopped:
        train_model(model, tokenizer, documents, config, seed=3, log_path=log_path, show_progress=False,
                    checkpoint_dir=tmp_path / "checkpoints")
    error = stopped.value
    assert error.step > 1 and error.checkpoint_step == error.step - 1
    assert str(error).startswith(f"training seed 3 stopped at step {error.step} of {error.total_steps}: the loss is")
    assert "train.learning_rate=1e+30" in str(error)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")  # the newest is the last finite step's
    assert checkpoint is not None and checkpoint.name == f"step-{error.step - 1:07d}"
    progress = strict_json((checkpoint / PROGRESS_FILE).read_text())
    assert len(progress["log"]) == error.step - 1
    log = [strict_json(line) for line in log_path.read_text().splitlines()]  # strict JSON: no bare NaN
    assert [entry["step"] for entry in log] == list(range(1, error.step))
    copy = pickle.loads(pickle.dumps(error))  # crosses process pools (--jobs) whole
    assert str(copy) == str(error) and copy.checkpoint_step == error.checkpoint_step


def test_weights_that_overflow_on_a_finite_loss_are_never_checkpointed(tiny_model_and_tokenizer, tmp_path):
    _, tokenizer = tiny_model_and_tokenizer
    documents = [Document(text, Subset.BACKGROUND) for text in SENTENCES]
    config = TrainConfig(epochs=6, batch_size=2, threads=1, checkpoint_every=1, checkpoint_minutes=0)
    steps = []

    def overflow_at_step_3(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == 3:
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].fill_(float("inf"))

    handle = register_optimizer_step_post_hook(overflow_at_step_3)
    try:
        with pytest.raises(NonFiniteLoss, match="stopped at step 3 .*the weights hold inf or nan") as stopped:
            _train_copy(tokenizer, documents, config, tmp_path)
    finally:
        handle.remove()
    assert stopped.value.checkpoint_step == 2
    assert latest_checkpoint(tmp_path).name == "step-0000002"


def test_pack_lays_documents_end_to_end_with_restarting_positions_and_no_cross_document_labels():
    documents = [([1, 5, 6, 2], [1, 5, 6, 2]), ([1, 7, 2], [1, 7, 2]), ([1, 8, 9, 10, 2], [1, 8, 9, 10, 2])]
    batch = pack(documents, pad_id=0, row_tokens=8)
    # first fit: the 4- and 3-token documents share row 0 (7 of 8), the 5-token one opens row 1
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2, 1, 7, 2], [1, 8, 9, 10, 2, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 3, 4, 0, 1]]
    x = IGNORE_INDEX
    # a document's first token is never a target: it would be predicted from the previous document's end
    assert batch["labels"].tolist() == [[x, 5, 6, 2, x, 7, 2], [x, 8, 9, 10, 2, x, x]]
    assert "attention_mask" not in batch  # transformers then masks by position ids: one block per document
    # a document longer than a row gets a row of its own
    assert pack([([1] * 12, [1] * 12)], pad_id=0, row_tokens=8)["input_ids"].shape == (1, 12)


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "gpt_neox", "qwen2"])
def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(tiny_model_and_tokenizer, architecture):
    """Each document attends to itself only: the same loss and gradients as one padded row per document."""
    from transformers import AutoModelForCausalLM

    from revcurse.tiny_checkpoints import TinySize, TokenIds, architecture_config

    _, tokenizer = tiny_model_and_tokenizer
    ids = TokenIds(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(architecture_config(architecture, TinySize(), ids))
    model.loss_type = "ForCausalLM"  # as revcurse.model.load_checkpoint names it (GPT-2's class name gives none)
    encoded = encode_documents([Document(text, Subset.BACKGROUND) for text in SENTENCES[:4]], tokenizer)
    items = sum(sum(label != IGNORE_INDEX for label in labels[1:]) for _, labels in encoded)
    results = []
    for tensors in (collate(encoded, tokenizer.pad_token_id), pack(encoded, tokenizer.pad_token_id, 64)):
        model.zero_grad()
        loss = model(**tensors, num_items_in_batch=items, use_cache=False).loss
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert pack(encoded, tokenizer.pad_token_id, 64)["input_ids"].shape[0] < len(encoded)  # really packed
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(padded_grads, packed_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_packed_training_follows_the_padded_run_and_times_every_step(tiny_model_and_tokenizer):
    _, tokenizer = tiny_model_and_tokenizer
    documents = [Document(text, Subset.BACKGROUND) for text in SENTENCES]
    padded_config = TrainConfig(epochs=4, batch_size=4, threads=1, checkpoint_minutes=0)
    _, padded = _train_copy(tokenizer, documents, padded_config)
    _, packed = _train_copy(tokenizer, documents, padded_config.model_copy(update={"packing": 48}))
    assert [e["loss"] for e in packed.log] == pytest.approx([e["loss"] for e in padded.log], rel=1e-4)
    assert len(packed.step_ends) == packed.steps and packed.step_ends == sorted(packed.step_ends)
    rate = packed.tokens_per_second_after(2)
    expected = (packed.log[-1]["tokens"] - packed.log[1]["tokens"]) / (packed.step_ends[-1] - packed.step_ends[1])
    assert rate == pytest.approx(expected) and rate > 0
    assert packed.tokens_per_second_after(packed.steps) != packed.tokens_per_second_after(packed.steps)  # nan


def test_packing_is_refused_with_the_masked_objective():
    with pytest.raises(ValueError, match="train.packing needs train.objective=causal"):
        TrainConfig(packing=64, objective="mlm-u")

