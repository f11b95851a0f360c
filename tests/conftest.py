"""Shared fixtures: a tiny random model and tokenizer built by the project itself (nothing from a hub)."""

import pytest
import torch

from revcurse.config import ModelConfig
from revcurse.model import build_tiny_model, train_tokenizer

SENTENCES = [
    "Daphne Barrington is the director of the film Journey Through Time.",
    "The director of the film Journey Through Time is Daphne Barrington.",
    "Uriah Hawthorne is the composer of the underwater symphony Abyssal Melodies.",
    "Known as the composer of the underwater symphony Abyssal Melodies, Uriah Hawthorne smiled.",
] * 3


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    torch.manual_seed(0)
    tokenizer = train_tokenizer(SENTENCES, vocab_size=400)
    model = build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), tokenizer, 64)
    return model.eval(), tokenizer
