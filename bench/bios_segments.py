"""How often ``reverse-segment`` keeps a bios name or birth date whole, by ``cure.segment_length`` (k).

A segment boundary inside an entity splits it across reversed segments, so the reversed text never shows the
whole date followed by the whole name. Golovneva et al. ask for segments at least as long as an entity; ours are
1..k words at random, so even k >= the entity length leaves some entities split. Default world, seed 0.
Usage: python bench/bios_segments.py
"""

from __future__ import annotations

from revcurse.config import load_config
from revcurse.cures import SEGMENT_SEPARATOR, CureContext, apply_cures
from revcurse.runner import build_trial


def main() -> None:
    corpus = build_trial(load_config(None, ["experiment=bios"]), seed=0, cured=False).corpus
    for k in (1, 2, 3, 4, 6, 8, 12, 25):
        cured = apply_cures(corpus, ["reverse-segment"], CureContext(segment_length=k, seed=0))
        whole = {"name (2 words, 6 a biography)": [0, 0], "date (3 words, 1 a biography)": [0, 0]}
        for document in cured.documents:
            if not document.reversal or not document.entities:
                continue
            segments = [s.strip().rstrip(".") for s in document.text.split(f" {SEGMENT_SEPARATOR} ")]
            for counts, entity, stated in zip(whole.values(), document.entities[:2], (6, 1), strict=True):
                counts[0] += sum(s.count(entity) for s in segments)
                counts[1] += stated
        print(f"k={k}: " + ", ".join(f"{label} whole {a / b:.2f}" for label, (a, b) in whole.items()))


if __name__ == "__main__":
    main()
