"""The report page: built from a tiny demo run and a tiny compare run, checked as text and in a real browser.

The browser test opens the page in headless Chromium (Debian's `chromium`; `make test` installs it when missing)
through playwright, which drives that binary and downloads no browser. It fails, never skips, when Chromium is
missing, so CI really checks that the page renders.
"""

import json
import shutil
import struct

import pytest

from revcurse.errors import InputError
from revcurse.report_data import read_compare, read_folder
from revcurse.report_page import ReportPageWarning, build_page, write_report, write_report_after_run
from tests.test_cli import SMALL, run_cli

# A page that cannot be written after a run is only a warning there (the run is kept); here it is an error.
pytestmark = pytest.mark.filterwarnings("error::revcurse.report_page.ReportPageWarning")

TINY = [*SMALL, "--set", "train.threads=1"]
RUN_SECTIONS = ("Run facts", "Accuracy forward and reverse", "Likelihood of the correct vs random targets",
                "Likelihood gap while training", "Training loss", "Per-fact results")
HOSTILE = "<script>alert('pwned')</script> & <b>bold</b>"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    assert run_cli(["demo", "--quiet", "--out", str(out), "--seeds", "2", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cmp"
    assert run_cli(["compare", "--cures", "bidirectional", "--quiet", "--seeds", "1", "--jobs", "1", "--out",
                    str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def hostile_run(demo_run, tmp_path_factory):
    """A copy of the demo run whose model answered with markup, for a fact whose name is markup too."""
    folder = tmp_path_factory.mktemp("runs") / "hostile"
    shutil.copytree(demo_run, folder, ignore=shutil.ignore_patterns("model", "report.*"))
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    for prediction in predictions[:4]:
        prediction.update(correct=False, completion=HOSTILE, fact_key="<img src=x onerror=alert(1)>")
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    return folder


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


# ---------------------------------------------------------------- the page as text


def test_demo_and_compare_write_the_page_themselves(demo_run, compare_run):
    for folder in (demo_run, compare_run, compare_run / "cure-none", compare_run / "cure-bidirectional"):
        assert (folder / "report.html").is_file(), folder
        assert (folder / "report.md").is_file(), folder
    assert not [p.name for p in demo_run.iterdir() if ".tmp-" in p.name]  # no temporary files left behind
    page = (demo_run / "report.html").read_text()
    assert f"<h2>Run: {demo_run}</h2>" in page  # written in the staging folder, headed by the run's own name
    assert ".tmp-" not in page


def test_run_page_has_every_section_and_is_self_contained(demo_run, tmp_path):
    page_path = write_report([demo_run], tmp_path / "page.html")
    page = page_path.read_text()
    for heading in RUN_SECTIONS:
        assert f">{heading}</h3>" in page, heading
    assert page.count('src="data:image/png;base64,') == 4  # accuracy, likelihood, likelihood curve, loss
    assert "<script" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    assert "config.yaml</summary>" in page and "tiny Llama from scratch" in page
    assert page.count('<details class="subset">') == 3  # one per subset
    assert "desc→name" in page and "example wrong answer" in page


def test_markdown_summary_extends_the_run_report(demo_run):
    summary = (demo_run / "report.md").read_text()
    assert summary.startswith("# revcurse run: ")
    assert "| subset | asked | trained | accuracy [95% CI]" in summary  # write_run's table, kept
    assert "## Facts per direction" in summary and "Final training loss: seed-0" in summary
    assert "report.html" in summary


def test_completions_and_names_from_the_data_are_escaped(hostile_run, tmp_path):
    page = write_report([hostile_run], tmp_path / "hostile.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_compare_page_shows_the_cures_and_each_arm(compare_run, tmp_path):
    page = write_report([compare_run], tmp_path / "cmp.html").read_text()
    assert ">Cures compared</h3>" in page
    assert "Arm: none" in page and "Arm: bidirectional" in page
    for heading in RUN_SECTIONS:  # each arm's run sections, one level down
        assert page.count(f">{heading}</h4>") == 2, heading
    assert page.count('src="data:image/png;base64,') == 2 + 2 * 4  # cures, training time; four per arm
    summary = (tmp_path / "cmp.md").read_text()
    assert "| cure | train seconds per seed [95% CI] |" in summary and "- bidirectional:" in summary


@pytest.fixture(scope="module")
def both_page(demo_run, compare_run, tmp_path_factory):
    """One page for the demo run and the compare run, written by the CLI."""
    path = tmp_path_factory.mktemp("pages") / "both.html"
    assert run_cli(["report", str(demo_run), str(compare_run), "--out", str(path)]) == 0
    return path


def test_several_folders_make_one_page_with_a_section_each(both_page):
    page = both_page.read_text()
    assert page.count('<section class="folder"') == 2
    assert both_page.with_suffix(".md").is_file()
    assert "# revcurse run: " in both_page.with_suffix(".md").read_text()


def test_build_page_takes_folders_read_once(demo_run):
    page = build_page([read_folder(demo_run)], title="a <title>")
    assert "<title>a &lt;title&gt;</title>" in page and page.startswith("<!DOCTYPE html>")


def test_cli_writes_into_the_folder_by_default(hostile_run, capsys):
    assert run_cli(["report", str(hostile_run)]) == 0
    assert (hostile_run / "report.html").is_file() and (hostile_run / "report.md").is_file()
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty", "families-like", "bad-json", "several-without-out", "not-html", "sweep"])
def test_bad_input_exits_2_with_a_clear_error(case, demo_run, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    args = ["report", str(folder)]
    expected = "not a run folder"
    if case == "families-like":
        (folder / "families.json").write_text("[]")
    elif case == "bad-json":
        (folder / "metrics.json").write_text("{not json")
        (folder / "run.json").write_text("{}")
        expected = "not valid JSON"
    elif case == "several-without-out":
        args = ["report", str(demo_run), str(demo_run)]
        expected = "--out"
    elif case == "sweep":
        (folder / "sweep.json").write_text("{}")
        expected = "a sweep folder, not a run folder: name its cells"
    elif case == "not-html":
        args = ["report", str(demo_run), "--out", str(tmp_path / "page.txt")]
        expected = ".html"
    assert run_cli(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and expected in error
    assert not (folder / "report.html").exists()


def test_a_failing_page_after_a_run_warns_and_keeps_the_run(tmp_path):
    with pytest.warns(ReportPageWarning, match="report.html not written"):
        write_report_after_run(tmp_path)  # an empty folder: not a run


# ---------------------------------------------------------------- the page in a browser


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium not found: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, timeout=60_000)
        yield browser
        browser.close()


def open_page(browser, path):
    """Load a page; return it with its console messages, page errors, dialogs and requested URLs."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    events = {"console": [], "errors": [], "requests": [], "dialogs": []}
    page.on("dialog", lambda dialog: (events["dialogs"].append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: events["console"].append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: events["errors"].append(str(error)))
    page.on("request", lambda request: events["requests"].append(request.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, events


def test_page_renders_in_chromium(browser, both_page, tmp_path):
    page, events = open_page(browser, both_page)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot))  # the first screen: a full page of a long report takes seconds
    assert events["console"] == [] and events["errors"] == [] and events["dialogs"] == []
    assert all(url.startswith(("file:", "data:")) for url in events["requests"])  # nothing from the network
    headings = page.eval_on_selector_all("h2, h3, h4", "nodes => nodes.map(n => n.textContent)")
    for heading in (*RUN_SECTIONS, "Cures compared"):
        assert heading in headings, heading
    assert any(h.startswith("Run: ") for h in headings) and any(h.startswith("Compare: ") for h in headings)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 4 + 2 + 2 * 4 and all(width > 0 for width in widths)
    fact_rows = page.eval_on_selector_all("details.subset table tr.fail", "rows => rows.length")
    assert fact_rows > 0
    visible = page.eval_on_selector("details.subset table tr.fail", "row => row.getBoundingClientRect().height")
    assert visible > 0
    color = page.eval_on_selector("tr.fail .acc", "cell => getComputedStyle(cell).color")
    assert color == "rgb(179, 38, 30)"  # a failing fact's accuracy in red (the page's CSS applied)
    assert png_size(screenshot) == (1200, 900)
    page.close()


def test_hostile_text_stays_text_in_chromium(browser, hostile_run, tmp_path):
    path = write_report([hostile_run], tmp_path / "hostile.html")
    page, events = open_page(browser, path)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.eval_on_selector_all("script", "nodes => nodes.length") == 0
    assert events["dialogs"] == [] and events["errors"] == [] and events["console"] == []
    assert HOSTILE in page.inner_text("body")
    page.close()


def test_a_crafted_cure_name_in_compare_json_is_refused(tmp_path):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text('[{"cure": "../../elsewhere", "metric": "accuracy"}]')
    with pytest.raises(InputError, match="not a cure name"):
        read_compare(tmp_path / "cmp")
