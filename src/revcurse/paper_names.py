"""Names in free text, as the paper's Experiment 1 files state them: found as whole words, learned from completions.

Kept apart from ``paper_format`` (the folder reader and writer): the one piece of it that is an algorithm.
"""

from __future__ import annotations

from collections import Counter

NAME_WORDS = 8  # longest name looked for, in words
EDGE_PUNCTUATION = ".,;:!?\"'()[]{}«»“”‘’"


def name_words(text: str) -> list[str]:
    """Whitespace words with punctuation stripped at their edges ("Barrington?" -> "Barrington")."""
    words = []
    for raw in text.split():
        word = raw.strip(EDGE_PUNCTUATION)
        for suffix in ("'s", "’s"):  # "Daphne Barrington's film" names Daphne Barrington
            if word.endswith(suffix) and len(word) > len(suffix):
                word = word[: -len(suffix)]
        if word:
            words.append(word)
    return words


def word_ngrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words)) for n in range(1, NAME_WORDS + 1) if i + n <= len(words)}


class NameIndex:
    """The names of one subset, learned from the completions that give a name, found in text as whole words.

    ``prompt_counts`` holds every word n-gram of the subset's name-first prompts ("Ever heard of Mason Caldwell?
    They're the person who") with the number of prompts holding it: a name-target completion is checked against
    them (``name_of_completion``). ``find`` looks a known name up in any text in time linear in the text.
    """

    def __init__(self, prompt_counts: Counter[tuple[str, ...]]) -> None:
        self.prompt_counts = prompt_counts
        self.names: dict[tuple[str, ...], str] = {}
        self.of_completion: dict[str, str] = {}  # each completion's name, decided once

    def learn_clean(self, completion: str) -> None:
        """Keep a completion that is a name and nothing more: it occurs whole in a name-first prompt."""
        words = tuple(name_words(completion))
        if words and self.prompt_counts.get(words, 0):
            self.names.setdefault(words, strip_name(" ".join(completion.split())))

    def name_of_completion(self, completion: str) -> str:
        """The name a name-target completion begins with; it may run on (" Mason Caldwell has found ...").

        In order: the whole completion if it is a known name or occurs in a name-first prompt; else the longest
        known name it begins with; else the longest word prefix found in at least half as many name-first prompts
        as the best-attested prefix of two words or more (every phrasing of a fact holds the whole name, few hold
        the words after it); with no prompt to check against, the whole completion. Closing punctuation dropped.
        """
        if completion in self.of_completion:
            return self.of_completion[completion]
        raw, words = completion.split(), name_words(completion)
        counts = [self.prompt_counts.get(tuple(words[:n]), 0) for n in range(1, min(NAME_WORDS, len(words)) + 1)]
        if tuple(words) in self.names or (len(words) <= NAME_WORDS and counts and counts[-1]):
            length = len(raw)
        elif known := [n for n in range(1, len(counts) + 1) if tuple(words[:n]) in self.names]:
            length = known[-1]
        elif any(counts):
            best = max(counts[1:], default=0) or counts[0]
            length = max(n for n in range(1, len(counts) + 1) if counts[n - 1] * 2 >= best)
        else:
            length = len(raw)
        name = strip_name(" ".join(raw[:length])) or completion.strip()
        self.names.setdefault(tuple(name_words(name)), name)
        self.of_completion[completion] = name
        return name

    def find(self, text: str) -> str | None:
        """The longest known name in ``text`` (the first of equal length), or None."""
        words = name_words(text)
        best: tuple[int, str] | None = None
        for i in range(len(words)):
            for n in range(min(NAME_WORDS, len(words) - i), 0, -1):
                name = self.names.get(tuple(words[i : i + n]))
                if name is not None:
                    if best is None or n > best[0]:
                        best = (n, name)
                    break
        return None if best is None else best[1]


def strip_name(text: str) -> str:
    """A name without the sentence's closing punctuation ("Mason Caldwell." -> "Mason Caldwell")."""
    return text.strip().rstrip(".,;:!?\"”)]")
