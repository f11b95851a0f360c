"""The own-facts audit as people read it, from a finished run's predictions (the model is never run again).

Each fact's forward and reverse answers side by side, and the counts of facts reachable each way. The tests over
all relations pooled are in the run's own records (the experiment's ``pooled`` group, ``metrics.pooled_groups``),
beside one group per relation (distractors are drawn per relation).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from revcurse.probe import ProbeResult

FORWARD, REVERSE = "forward", "reverse"  # the own-facts experiment's asked directions


@dataclass(frozen=True)
class FactAudit:
    """One fact's two probe results. ``line`` is its line in the facts file (0 when not known)."""

    forward: ProbeResult
    reverse: ProbeResult
    line: int = 0

    @property
    def relation(self) -> str:
        return self.forward.subset

    @property
    def subject(self) -> str:
        return self.reverse.target.strip()

    @property
    def object(self) -> str:
        return self.forward.target.strip()


def fact_audits(results: list[ProbeResult], lines: list[int] | None = None) -> list[FactAudit]:
    """Pair one seed's results, which the own-facts experiment asks as (forward, reverse) per fact, in order;
    ``lines``: each fact's line in its file. A ValueError for results of another experiment."""
    pairs = list(zip(results[::2], results[1::2], strict=True)) if len(results) % 2 == 0 else None
    if pairs is None or any((f.asked, r.asked) != (FORWARD, REVERSE) or f.subset != r.subset for f, r in pairs):
        raise ValueError("not the predictions of an own-facts run (a forward and a reverse probe per fact)")
    lines = lines if lines is not None and len(lines) == len(pairs) else [0] * len(pairs)
    return [FactAudit(forward, reverse, line) for (forward, reverse), line in zip(pairs, lines)]


def summary_line(audits: list[FactAudit]) -> str:
    """How many facts the model reaches each way (greedy answer right) and ranks first among its candidates."""
    n = len(audits)

    def count(direction: str, check) -> int:
        return sum(check(getattr(audit, direction)) for audit in audits)

    reach = {d: count(d, lambda r: r.correct) for d in (FORWARD, REVERSE)}
    first = {d: count(d, lambda r: r.rank == 1) for d in (FORWARD, REVERSE)}
    return (
        f"forward reachable {reach[FORWARD]}/{n}, reverse reachable {reach[REVERSE]}/{n} (correct answer ranked "
        f"first: forward {first[FORWARD]}/{n}, reverse {first[REVERSE]}/{n})"
    )


def audit_table(audits: list[FactAudit], title: str = "") -> Table:
    """Every fact with its forward and reverse answer (✓/✗) and the correct answer's rank. User text is escaped:
    a fact or an answer holding ``[/x]`` is shown as written, never read as markup."""
    table = Table(title=title or None)
    for column in ("line", "fact", "forward answer", "rank", "reverse answer", "rank"):
        table.add_column(column)
    for audit in audits:
        cells = []
        for result in (audit.forward, audit.reverse):
            mark = "[green]✓[/]" if result.correct else "[red]✗[/]"
            cells += [f"{mark} {escape(result.completion.strip()) or '(nothing)'}",
                      f"{result.rank:g}/{result.n_candidates}"]  # fmt: skip
        fact = escape(f"{audit.subject} | {audit.relation} | {audit.object}")
        table.add_row(str(audit.line or ""), fact, *cells)
    return table



