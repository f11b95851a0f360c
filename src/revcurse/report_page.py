"""The report page: one self-contained HTML file (and a Markdown summary) for finished run and compare folders.

Why a page beside the table: the table says *that* reverse accuracy is zero; the page shows *how* — the error
bars, the likelihood of the right answer against the wrong ones probe by probe, whether training converged, and
which facts failed with what the model said instead. It reads only what a run wrote (records, predictions,
training logs, run.json, config.yaml) and never runs a model.

Self-contained: plots are inline PNGs (matplotlib, Agg backend) and the CSS is inline, with no script and no
network, so the file can be mailed or archived as it is. Every text that comes from the model or the data is
escaped (``html.escape``): completions are model output. Files are written under a temporary name and renamed.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

from revcurse.errors import InputError
from revcurse.report import ASKED_LABEL, calibration_lines, markdown_report, result_rows, shown_columns
from revcurse.report_compare import COLUMNS as COMPARE_COLUMNS
from revcurse.report_compare import compare_rows, markdown_compare
from revcurse.report_data import CompareData, FactRow, RunData, fact_rows, failure_counts, read_folder
from revcurse.report_plots import (
    plot_accuracy,
    plot_compare_accuracy,
    plot_curve,
    plot_likelihood,
    plot_loss,
    plot_train_time,
)
from revcurse.versions import version_differences

FAILING_ROWS_PER_GROUP = 25  # per (subset, asked direction): enough to see the pattern, small enough to read
STAGING_NAME = re.compile(r"^\.(.+)\.(?:tmp-[^/]*|partial)$")  # records.run_folder's name for a run in progress


class ReportPageWarning(UserWarning):
    """The page could not be written after a run; the run itself is kept (tests turn this into an error)."""


# ---------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin-top:1.8rem}h4{margin-top:1.4rem}
section.arm{border-left:4px solid #ddd;padding-left:1rem;margin-left:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f0f0f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail .acc{color:#b3261e;font-weight:600}.answer{background:#fde3e0;border-radius:2px;padding:0 2px}
img{max-width:100%;height:auto;background:#fff;border:1px solid #eee}
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}
pre{background:#f4f4f6;padding:.6rem;overflow-x:auto;font-size:12px}
code,.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}.note{color:#555}nav a{margin-right:1rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], raw: bool = False, row_classes: list[str] | None = None,
           numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless ``raw`` (already-built HTML)."""
    numeric = numeric or set()
    lines = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes else ""
        cells = "".join(
            f'<td{" class=num" if i in numeric else ""}>{cell if raw else _e(cell)}</td>' for i, cell in enumerate(row)
        )
        lines.append(f"<tr{css}>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _seconds(value: object) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else "?"


def run_facts_html(run: RunData, level: int) -> str:
    """Model, parameters, seeds, timings and the config."""
    s = run.summary
    items = [
        ("model", s.get("model", "?")),
        ("parameters", f"{s['parameters']:,}" if isinstance(s.get("parameters"), int) else "?"),
        ("seeds", ", ".join(str(x) for x in s.get("seeds", []))),
        ("cures", ", ".join(s.get("cures") or []) or "none"),
        ("objective", s.get("objective", "?")),
        ("training", f"{_seconds(s.get('train_seconds'))} in all, "
                     f"{s.get('tokens_per_second', 0):,.0f} tokens/s"),
        ("probing", _seconds(s.get("probe_seconds"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())),
    ]
    differences = version_differences(s.get("versions"))
    if differences:
        items.append(("installed now", "other versions than the run's: " + "; ".join(differences)
                      + " (a rerun may not give the same numbers)"))
    parts = [f"<h{level}>Run facts</h{level}>", '<dl class="facts">']
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items]
    parts.append("</dl>")
    per_seed = s.get("per_seed") or []
    if per_seed:
        columns = [("seed", "seed"), ("world_seed", "world seed"), ("documents", "documents"),
                   ("probes", "probes"), ("train_steps", "steps"), ("train_seconds", "train s"),
                   ("tokens_per_second", "tokens/s"), ("final_loss", "final loss"), ("probe_seconds", "probe s")]
        rows = [[_format_stat(key, stats.get(key)) for key, _ in columns] for stats in per_seed]
        parts.append(_table([label for _, label in columns], rows, numeric=set(range(len(columns)))))
    if run.config_text:
        parts.append(f"<details><summary>config.yaml</summary><pre>{_e(run.config_text)}</pre></details>")
    return "\n".join(parts)


def _format_stat(key: str, value: object) -> str:
    if value is None:
        return ""
    if key in ("train_seconds", "probe_seconds"):
        return f"{value:.1f}"
    if key == "tokens_per_second":
        return f"{value:,.0f}"
    if key == "final_loss":
        return f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def fact_table_html(rows: list[FactRow], level: int) -> str:
    """A <details> per subset: counts per direction, then the failing facts with an example wrong answer."""
    parts = [f"<h{level}>Per-fact results</h{level}>",
             '<p class="note">Accuracy of each fact over its held-out phrasings, per seed and asked direction. '
             f"Failing facts first, at most {FAILING_ROWS_PER_GROUP} per direction; the example is one phrasing "
             "the model got wrong, with its greedy answer.</p>"]
    by_subset: dict[str, list[FactRow]] = defaultdict(list)
    for row in rows:
        by_subset[row.subset].append(row)
    for subset, subset_rows in by_subset.items():
        counts = failure_counts(subset_rows)
        failing = sum(c["some"] + c["none"] for c in counts)
        parts.append(f'<details class="subset"><summary>{_e(subset)}: {failing} of {len(subset_rows)} '
                     "(fact, seed, direction) rows not always right</summary>")
        parts.append(_table(
            ["asked", "trained", "always right", "sometimes", "never right"],
            [[ASKED_LABEL.get(c["asked"], c["asked"]), "yes" if c["trained"] else "no", str(c["all"]),
              str(c["some"]), str(c["none"])] for c in counts],
            numeric={2, 3, 4},
        ))
        table_rows, not_shown = [], []
        for asked in dict.fromkeys(r.asked for r in subset_rows):
            wrong = sorted((r for r in subset_rows if r.asked == asked and r.correct < r.probes),
                           key=lambda r: (r.accuracy, r.fact, str(r.seed)))
            table_rows += [_fact_cells(row) for row in wrong[:FAILING_ROWS_PER_GROUP]]
            if len(wrong) > FAILING_ROWS_PER_GROUP:
                not_shown.append(f"{len(wrong) - FAILING_ROWS_PER_GROUP} more {ASKED_LABEL.get(asked, asked)}")
        if table_rows:
            parts.append(_table(["seed", "fact", "asked", "trained", "accuracy", "example wrong answer"],
                                table_rows, raw=True, row_classes=["fail"] * len(table_rows)))
            if not_shown:
                parts.append(f'<p class="note">Not shown: {_e(", ".join(not_shown))} failing rows.</p>')
        else:
            parts.append('<p class="note">Every fact right on every phrasing.</p>')
        parts.append("</details>")
    return "\n".join(parts)


def _fact_cells(row: FactRow) -> list[str]:
    example = ""
    if row.wrong is not None:
        completion = row.wrong.get("completion")
        answer = "(not generated)" if completion is None else completion
        example = (f'<span class="text">{_e(row.wrong.get("prompt", ""))}<b> → </b>'
                   f'<span class="answer">{_e(answer)}</span></span>'
                   f'<br><span class="note">expected: <span class="text">{_e(row.wrong.get("target", ""))}'
                   "</span></span>")
    return [_e(row.seed), _e(row.fact), _e(ASKED_LABEL.get(row.asked, row.asked)),
            "yes" if row.trained else "no", f'<span class="acc">{row.correct}/{row.probes}</span>', example]


def run_section_html(run: RunData, level: int) -> str:
    """Everything about one run folder, headings from ``level`` down."""
    h = level
    parts = [run_facts_html(run, h)]
    parts.append(f"<h{h}>Accuracy forward and reverse</h{h}>")
    if run.records:
        parts.append(_img(plot_accuracy(run.records), "accuracy per subset and asked direction"))
        rows = result_rows(run.records)
        columns = shown_columns(rows)
        parts.append(_table(list(columns.values()), [[r[key] for key in columns] for r in rows]))
    if run.calibration:
        lines = "".join(f"<li>{_e(line)}</li>" for line in calibration_lines(run.calibration))
        parts.append(f"<p>Placebo calibration of the tests (another fact's target in the same phrasing as the "
                     f"\"correct\" one):</p><ul>{lines}</ul>")
    parts.append(f"<h{h}>Likelihood of the correct vs random targets</h{h}>")
    if run.predictions:
        parts.append(_img(plot_likelihood(run.predictions), "log p of correct and other targets"))
    else:
        parts.append('<p class="note">No predictions.jsonl in this folder.</p>')
    if run.curves:  # revcurse.curve: does training move the reverse direction's likelihood at all?
        parts.append(f"<h{h}>Likelihood gap while training</h{h}>")
        parts.append(_img(plot_curve(run.curves), "likelihood gap of each probe group against the training step"))
    parts.append(f"<h{h}>Training loss</h{h}>")
    if run.train_logs:
        parts.append(_img(plot_loss(run.train_logs), "training loss per seed"))
    else:
        parts.append('<p class="note">No seed-N/train_log.jsonl in this folder.</p>')
    if run.predictions:
        parts.append(fact_table_html(fact_rows(run.predictions), h))
    return "\n".join(parts)


def compare_section_html(data: CompareData, level: int) -> str:
    """The cures side by side, then each arm's own run section."""
    h = level
    arm_links = " ".join(f'<a href="#{_anchor(data.folder, arm)}">{_e(arm)}</a>' for arm in data.arms)
    parts = [f"<h{h}>Cures compared</h{h}>", f"<nav>Arms: {arm_links}</nav>",
             _img(plot_compare_accuracy(data.records), "accuracy by cure, subset and asked direction"),
             _img(plot_train_time(data.records), "training time per cure"),
             _table(list(COMPARE_COLUMNS.values()),
                    [[r[key] for key in COMPARE_COLUMNS] for r in compare_rows(data.records)])]
    for arm, run in data.arms.items():
        parts.append(f'<section class="arm" id="{_anchor(data.folder, arm)}"><h{h}>Arm: {_e(arm)} '
                     f'<span class="note">({_e(Path(display_path(run.folder)).name)})</span></h{h}>')
        parts.append(run_section_html(run, h + 1))
        parts.append("</section>")
    return "\n".join(parts)


def display_path(folder: Path) -> str:
    """The folder as people will find it: a run's staging name (``.NAME.partial``) shown as NAME."""
    return str(Path(*(STAGING_NAME.sub(r"\1", part) for part in folder.parts))) if folder.parts else str(folder)


def _anchor(folder: Path, suffix: str = "") -> str:
    name = Path(display_path(folder)).name
    text = f"{name}-{suffix}" if suffix else name
    return "s-" + "".join(c if c.isalnum() else "-" for c in text)


def build_page(items: list[RunData | CompareData], title: str = "revcurse report") -> str:
    """The whole page, one section per folder."""
    nav = " ".join(f'<a href="#{_anchor(i.folder)}">{_e(Path(display_path(i.folder)).name)}</a>' for i in items)
    body = []
    for item in items:
        kind = "Compare" if isinstance(item, CompareData) else "Run"
        heading = f"{kind}: {_e(display_path(item.folder))}"
        body.append(f'<section class="folder" id="{_anchor(item.folder)}"><h2>{heading}</h2>')
        body.append(compare_section_html(item, 3) if isinstance(item, CompareData) else run_section_html(item, 3))
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(title)}</h1>\n"
        '<p class="note">The Reversal Curse, measured: accuracy on held-out phrasings forward and reverse, the '
        "likelihood of the correct answer against the other answers of the same subset, training, and per-fact "
        "answers. Read from the run files; no model was run to make this page.</p>\n"
        f"<nav>{nav}</nav>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- Markdown


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def run_markdown(run: RunData, title: str) -> str:
    """report.md's content (markdown_report) with the failure counts and the training loss added."""
    text = markdown_report(run.records, run.summary, run.calibration).replace("# revcurse run", f"# {title}", 1)
    lines = [text.rstrip("\n"), ""]
    if run.predictions:
        lines += ["## Facts per direction", "",
                  "| subset | asked | trained | always right | sometimes | never right |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['subset']} | {ASKED_LABEL.get(c['asked'], c['asked'])} | {'yes' if c['trained'] else 'no'} "
                  f"| {c['all']} | {c['some']} | {c['none']} |" for c in failure_counts(fact_rows(run.predictions))]
        lines.append("")
    if run.train_logs:
        finals = ", ".join(f"{name} {log[-1]['loss']:.3f}" for name, log in run.train_logs.items())
        lines += [f"Final training loss: {_md_cell(finals)}.", ""]
    return "\n".join(lines)


def compare_markdown(data: CompareData) -> str:
    title = f"# revcurse compare: {display_path(data.folder)}"
    text = markdown_compare(data.records).replace("# revcurse compare", title, 1)
    costs = [r for r in data.records if r["metric"] == "train_seconds"]
    lines = [text.rstrip("\n"), "", "| cure | train seconds per seed [95% CI] |", "|---|---|"]
    lines += [f"| {_md_cell(r['cure'])} | {r['mean']:.0f} [{r['ci95_low']:.0f}, {r['ci95_high']:.0f}] |" for r in costs]
    lines += ["", "Facts never right on any phrasing (per seed), by arm:", ""]
    for arm, run in data.arms.items():
        if run.predictions:
            counts = failure_counts(fact_rows(run.predictions))
            never = ", ".join(f"{c['subset']} {ASKED_LABEL.get(c['asked'], c['asked'])}: {c['none']}/"
                              f"{c['all'] + c['some'] + c['none']}" for c in counts if c["none"])
            lines.append(f"- {_md_cell(arm)}: {never or 'none'}")
    return "\n".join(lines) + "\n"


def build_markdown(items: list[RunData | CompareData], page: Path) -> str:
    """The Markdown summary: each folder's table and counts, and where the page is."""
    sections = [
        compare_markdown(item) if isinstance(item, CompareData)
        else run_markdown(item, f"revcurse run: {display_path(item.folder)}")
        for item in items
    ]
    text = "\n\n".join(section.rstrip("\n") for section in sections)
    return text + f"\n\nThe page with plots and per-fact answers: {page.name}\n"


# ---------------------------------------------------------------- writing


def _write_atomically(path: Path, text: str) -> None:
    """Write under a temporary name beside ``path``, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed before the rename)
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.tmp-", delete=False
    )
    try:
        with handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # as an ordinary file (a temporary file is private)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_report(folders: list[Path], out: Path | None = None) -> Path:
    """Write the page (default FOLDER/report.html) and its Markdown summary (same name, .md); return the page.

    Several folders make one page with a section each; they need ``out``.
    """
    folders = [Path(f) for f in folders]
    if not folders:
        raise InputError("name at least one run or compare folder")
    if out is None:
        if len(folders) > 1:
            raise InputError("several folders make one page: say where with --out FILE.html")
        out = folders[0] / "report.html"
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError("the page must end in .html", out)
    items = [read_folder(folder) for folder in folders]
    title = "revcurse report: " + ", ".join(Path(display_path(f)).name for f in folders)
    _write_atomically(out, build_page(items, title))
    _write_atomically(out.with_suffix(".md"), build_markdown(items, out))
    return out


def write_report_after_run(folder: Path) -> None:
    """The hook at the end of a run: write the page, and if that fails, warn and keep the run.

    A run can take many minutes; a plotting problem must not throw it away. The warning names the error (so it
    is never silent), and tests turn ``ReportPageWarning`` into an error.
    """
    try:
        write_report([folder])
    except Exception as error:  # noqa: BLE001 (reported, not swallowed: see the warning)
        warnings.warn(f"report.html not written in {folder}: {type(error).__name__}: {error}", ReportPageWarning,
                      stacklevel=2)
