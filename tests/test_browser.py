"""End to end: the real Streamlit server, driven in headless Debian Chromium through Playwright.

What AppTest cannot see is checked here: the page renders in a browser without an exception box,
the headline peak-VRAM number is the engine's number (what `python -m calculator estimate ... --json`
reports as total_bytes), Plotly charts draw, widgets rerun the script and update the URL, a shared
link reproduces its view, a tampered link degrades to warnings, and every page of the navigation loads
at its URL path under its sidebar name.

One server for the session (offline: the Hub is blocked), one browser, a fresh browser context
(= a fresh Streamlit session) per test. Screenshots go to tests/artifacts/ (git-ignored).
Skipped, with the reason, where Debian's chromium or playwright is missing; CI installs both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_support import (
    EXCEPTION,
    REPO_ROOT,
    RERUN_TIMEOUT_MS,
    VIEWPORT,
    StreamlitServer,
    browser_unavailable_reason,
    chromium,
    open_page,
    save_screenshot,
    wait_for_app,
)

from calculator.report import build_plan, estimate_to_dict
from calculator.resolve import resolve_model
from calculator.units import GB, GiB
from calculator.workload import Workload
from ui.navigation import NAV_PAGES, NavPage

_UNAVAILABLE = browser_unavailable_reason()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")]

DEFAULT_MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
CHART = "[data-testid='stPlotlyChart']"
ALERT = "[data-testid='stAlert'], [data-testid='stAlertContainer']"


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_server() -> Iterator[StreamlitServer]:
    with StreamlitServer(REPO_ROOT / "app.py") as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect

    # expect() polls for 5 s by default; a cold run on a loaded CI machine can take longer.
    expect.set_options(timeout=RERUN_TIMEOUT_MS)
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, app_server: StreamlitServer) -> Iterator[Any]:
    """A fresh browser context per test: its own Streamlit session, so no widget state leaks."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(RERUN_TIMEOUT_MS)
    pg = context.new_page()
    pg.page_errors = []  # uncaught JavaScript errors, reported on failure
    pg.on("pageerror", lambda exc: pg.page_errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()


# --------------------------------------------------------------------------------------------
# Helpers: the engine's numbers, and how the page shows them
# --------------------------------------------------------------------------------------------


def engine_json(model: str, **workload: Any) -> dict[str, Any]:
    """What `python -m calculator estimate MODEL ... --json` prints, computed in-process (offline, from the catalog)."""
    spec = resolve_model(model, offline=True).spec
    return estimate_to_dict(build_plan(spec, Workload(**workload)))


def engine_total_bytes(model: str, **workload: Any) -> int:
    return engine_json(model, **workload)["total_bytes"]


def page_total_bytes(**params: str) -> int:
    """The engine's total for the workload the main page builds from these URL parameters."""
    from ui.state import MAIN_PARAMS, main_workload, read_params, reconcile_main

    values, _ = read_params(MAIN_PARAMS, params)
    values, _ = reconcile_main(values)
    return estimate_to_dict(build_plan(resolve_model(values["model"], offline=True).spec, main_workload(values)))["total_bytes"]


def display_forms(num_bytes: int) -> list[str]:
    """The ways a page may print `num_bytes`: GiB or GB, one or two decimals, labelled."""
    return [f"{num_bytes / unit:,.{digits}f} {name}" for unit, name in ((GiB, "GiB"), (GB, "GB")) for digits in (2, 1)]


def peak_metric_value(page: Any) -> Any:
    metric = page.locator("[data-testid='stMetric']").filter(has_text=re.compile(r"peak vram", re.I)).first
    return metric.locator("[data-testid='stMetricValue']")


def expect_peak(page: Any, num_bytes: int) -> None:
    """The headline peak-VRAM metric shows `num_bytes` (waits for the rerun that produces it)."""
    from playwright.sync_api import expect

    forms = display_forms(num_bytes)
    expect(peak_metric_value(page)).to_have_text(re.compile(r"^\s*(" + "|".join(re.escape(f) for f in forms) + r")\s*$"))


def expect_no_exception(page: Any) -> None:
    """No exception box (the run is over when this is called, so it is all there) and no uncaught JavaScript error."""
    boxes = page.locator(EXCEPTION)
    shown = [boxes.nth(i).inner_text()[:2000] for i in range(boxes.count())]
    assert not shown, "the page shows an exception:\n" + "\n---\n".join(shown)
    assert not page.page_errors, f"JavaScript errors: {page.page_errors}"


def widget(page: Any, testid: str, label: str) -> Any:
    """The widget of kind `testid` (stSelectbox, stRadio, stNumberInput, ...) whose label is exactly `label`."""
    return page.locator(f"[data-testid='{testid}']").filter(
        has=page.locator("[data-testid='stWidgetLabel']").get_by_text(label, exact=True)
    ).first


def selectbox(page: Any, label: str) -> Any:
    """The input of the selectbox labelled `label` (a combobox named by its label; its value is the shown option)."""
    return page.get_by_role("combobox", name=label, exact=True)


def choose(page: Any, label: str, option: str) -> None:
    """Pick `option` (as displayed) in the selectbox labelled `label`, as a user does: open, click."""
    selectbox(page, label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def type_number(page: Any, label: str, value: int) -> None:
    field = widget(page, "stNumberInput", label).locator("input")
    field.fill(str(value))
    field.press("Enter")
    wait_for_app(page)


def query(page: Any) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def wait_for_query(page: Any, **expected: str) -> None:
    """Streamlit rewrites the URL with history.replaceState after the run; poll until it says `expected`."""
    page.wait_for_function(
        "(want) => { const q = new URLSearchParams(location.search); return Object.entries(want).every(([k, v]) => q.get(k) === v); }",
        arg=expected,
        timeout=RERUN_TIMEOUT_MS,
    )


def wait_for_charts(page: Any, at_least: int) -> int:
    """Plotly draws after the script run ends; wait until `at_least` charts hold an <svg>."""
    page.wait_for_function(
        "([sel, n]) => [...document.querySelectorAll(sel)].filter(c => c.querySelector('.js-plotly-plot svg, svg.main-svg')).length >= n",
        arg=[CHART, at_least],
        timeout=RERUN_TIMEOUT_MS,
    )
    return page.locator(CHART).count()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_default_view_shows_the_engine_number_and_charts(page: Any, app_server: StreamlitServer) -> None:
    from playwright.sync_api import expect

    open_page(page, app_server.url("/"))
    expect_no_exception(page)
    expect(page.locator("[data-testid='stMain']")).to_contain_text(DEFAULT_MODEL)
    # The model facts line, as the seed's model page shows it (the catalog's dated copy: the server is offline).
    expect(page.locator(".model-facts")).to_have_text(
        "5.77B params · text-to-speech · higgs_audio_v2 · 161.6K downloads · 678 likes · updated May 31, 2026")
    # fp16 inference, 4,096 tokens, batch 1: the CLI's defaults and the page's.
    expected = engine_json(DEFAULT_MODEL, precision="fp16", mode="inference", context_length=4096, batch_size=1)
    expect_peak(page, expected["total_bytes"])
    assert wait_for_charts(page, 2) >= 2
    # The cheapest fit is the CLI's cheapest_fit (bundled prices; no live prices, no user rates by default).
    cheapest = expected["cheapest_fit"]
    assert cheapest is not None
    metric = page.locator("[data-testid='stMetric']").filter(has_text=re.compile("cheapest", re.I))
    expect(metric).to_have_count(1)
    expect(metric).to_contain_text(f"${cheapest['total_usd_per_hour']:,.2f}")
    expect(page.locator("[data-testid='stMain']")).to_contain_text(f"{cheapest['count']}× {cheapest['gpu']}")
    save_screenshot(page, "main")


def test_widgets_rerun_and_update_the_url(page: Any, app_server: StreamlitServer) -> None:
    open_page(page, app_server.url("/"))
    before = peak_metric_value(page).inner_text()

    choose(page, "Precision", "INT4")
    expect_peak(page, engine_total_bytes(DEFAULT_MODEL, precision="int4", context_length=4096))
    wait_for_query(page, precision="int4", model=DEFAULT_MODEL)
    assert peak_metric_value(page).inner_text() != before
    expect_no_exception(page)
    save_screenshot(page, "main-int4", full_page=False)

    type_number(page, "Context length (tokens)", 8192)
    expect_peak(page, engine_total_bytes(DEFAULT_MODEL, precision="int4", context_length=8192))
    wait_for_query(page, precision="int4", context="8192")
    expect_no_exception(page)


def test_shared_link_reproduces_the_view(page: Any, app_server: StreamlitServer) -> None:
    from playwright.sync_api import expect

    model = "meta-llama/Llama-3.1-8B"
    open_page(page, app_server.url("/", f"model={model}&precision=bf16&context=8192&mode=lora"))
    expect_no_exception(page)
    expect(page.locator("[data-testid='stMain']")).to_contain_text(model)
    expect(widget(page, "stTextInput", "Model id (Hugging Face)").locator("input")).to_have_value(model)
    expect(selectbox(page, "Precision")).to_have_value("BF16")
    expect(widget(page, "stRadio", "Mode").get_by_role("radio", name="LoRA fine-tune", exact=True)).to_be_checked()
    expect(widget(page, "stNumberInput", "Context length (tokens)").locator("input")).to_have_value("8192")
    # A fine-tuning view applies its trainer's preset (ui/state.py, trainer=trl-sft by default), so the engine
    # number is the one of the workload the page builds from these parameters, not Workload()'s defaults.
    expect_peak(page, page_total_bytes(model=model, precision="bf16", context="8192", mode="lora"))
    # A clean link is taken as is: no correction notes, and the URL still says what it said.
    expect(page.locator(ALERT).filter(has_text="URL parameter")).to_have_count(0)
    q = query(page)
    assert (q.get("model"), q.get("precision"), q.get("context"), q.get("mode")) == (model, "bf16", "8192", "lora")
    save_screenshot(page, "main-shared-link", full_page=False)


def test_tampered_link_warns_without_an_exception(page: Any, app_server: StreamlitServer) -> None:
    from playwright.sync_api import expect

    open_page(page, app_server.url("/", "context=-5&precision=fp7&model=../../etc"))
    expect_no_exception(page)
    expect(page.locator(ALERT).first).to_be_visible()
    # Nothing of the tampered values reaches the inputs or the URL that is shared on.
    expect(selectbox(page, "Precision")).to_have_value("FP16")
    assert widget(page, "stNumberInput", "Context length (tokens)").locator("input").input_value() != "-5"
    wait_for_query(page, precision="fp16", context="4096")
    assert "etc" not in query(page).get("model", "")
    save_screenshot(page, "main-tampered", full_page=False)


def test_unknown_model_without_the_hub_is_an_error_not_a_crash(page: Any, app_server: StreamlitServer) -> None:
    """The server runs with the Hub blocked, as on a demo machine without network: a model outside the
    catalog must give an error message quickly, keep the inputs, and raise nothing."""
    from playwright.sync_api import expect

    model = "someorg/not-in-the-catalog"
    open_page(page, app_server.url("/", f"model={model}"))
    expect_no_exception(page)
    expect(page.locator(ALERT).filter(has_text=model).first).to_be_visible()
    expect(widget(page, "stTextInput", "Model id (Hugging Face)").locator("input")).to_have_value(model)
    wait_for_query(page, model=model)


@pytest.mark.parametrize("nav", NAV_PAGES, ids=[p.title for p in NAV_PAGES])
def test_every_page_loads(page: Any, app_server: StreamlitServer, nav: NavPage) -> None:
    from playwright.sync_api import expect

    open_page(page, app_server.url(f"/{nav.url_path}"))
    expect_no_exception(page)
    # The page asked for, not the main page: an unknown path shows "Page not found" and redirects to "/".
    expect(page.get_by_role("dialog").filter(has_text="Page not found")).to_have_count(0)
    assert urlsplit(page.url).path == f"/{nav.url_path}", page.url
    expect(page.locator("[data-testid='stMain'] h1").first).to_be_visible()
    # The sidebar names every page as the navigation declares it, the main page first as "Calculator" (not "app").
    links = page.locator("[data-testid='stSidebarNav'] [data-testid='stSidebarNavLink']")
    expect(links).to_have_count(len(NAV_PAGES))
    assert [links.nth(i).inner_text().strip().splitlines()[-1].strip() for i in range(links.count())] == [p.title for p in NAV_PAGES]
    save_screenshot(page, (nav.url_path or "calculator").split("_")[0].lower())


def test_sidebar_link_keeps_the_shared_setting_on_return(page: Any, app_server: StreamlitServer) -> None:
    """Going to Compare and back through the sidebar shows the main page with the setting of the link it was opened with."""
    from playwright.sync_api import expect

    open_page(page, app_server.url("/", "precision=int4&context=8192"))
    page.locator("[data-testid='stSidebarNavLink']").filter(has_text="Compare").click()
    wait_for_app(page)
    expect(page.locator("[data-testid='stMain'] h1").first).to_have_text("Compare models and settings")
    assert urlsplit(page.url).path == "/Compare"
    page.locator("[data-testid='stSidebarNavLink']").filter(has_text="Calculator").click()
    wait_for_app(page)
    expect_peak(page, engine_total_bytes(DEFAULT_MODEL, precision="int4", context_length=8192))
    wait_for_query(page, precision="int4", context="8192")
    expect_no_exception(page)


def test_similar_model_link_opens_that_model_with_the_same_setting(page: Any, app_server: StreamlitServer) -> None:
    from playwright.sync_api import expect

    open_page(page, app_server.url("/", "model=meta-llama/Llama-3.1-8B&precision=int4&context=8192"))
    link = page.locator("[data-testid='stMain'] a").filter(has_text="Meta-Llama-3-8B-Instruct").first
    expect(link).to_be_visible()
    # Streamlit opens markdown links in a new tab; either way one click shows the other model's view.
    with page.context.expect_page() as opened:
        link.click()
    other = opened.value
    other.page_errors = []
    wait_for_app(other)
    expect(widget(other, "stTextInput", "Model id (Hugging Face)").locator("input")).to_have_value("meta-llama/Meta-Llama-3-8B-Instruct")
    expect(selectbox(other, "Precision")).to_have_value("INT4")
    expect_peak(other, engine_total_bytes("meta-llama/Meta-Llama-3-8B-Instruct", precision="int4", context_length=8192))
    expect_no_exception(other)


def test_precision_mode_cells_say_what_they_compute(page: Any, app_server: StreamlitServer) -> None:
    """INT8 · LoRA is its own configuration (LoRA on an LLM.int8 base), not the NF4 number; cells with no
    configuration of their own show — (report.table_cell_absent gives the reasons in the caption)."""
    from playwright.sync_api import expect

    from calculator.estimate import estimate
    from calculator.report import table_workload
    from calculator.units import format_bytes
    from ui.state import MAIN_PARAMS, main_workload, reconcile_main

    open_page(page, app_server.url("/"))
    table = page.locator("[data-testid='stTable']").filter(has_text="QLoRA fine-tune").first
    expect(table).to_be_visible()
    header = [table.locator("thead th").nth(i).inner_text().strip() for i in range(table.locator("thead th").count())]
    rows = {}
    for i in range(table.locator("tbody tr").count()):
        cells = table.locator("tbody tr").nth(i).locator("th, td")
        texts = [cells.nth(j).inner_text().strip() for j in range(cells.count())]
        rows[texts[0]] = dict(zip(header[1:], texts[1:], strict=False))
    lora, qlora = "LoRA fine-tune", "QLoRA fine-tune"
    # The cells keep everything else of the view: the page's default workload (its trainer preset included).
    values, _ = reconcile_main({p.name: p.default for p in MAIN_PARAMS})
    spec, view = resolve_model(DEFAULT_MODEL, offline=True).spec, main_workload(values)
    for precision, mode, column in (("int8", "lora", lora), ("int4", "qlora", qlora)):
        assert rows[precision.upper()][column] == format_bytes(estimate(spec, table_workload(view, precision, mode)).total_bytes)
    assert rows["INT8"][lora] != rows["INT4"][qlora]
    assert rows["INT8"][qlora] == rows["INT4"][lora] == "—"
    expect(page.locator("[data-testid='stMain']")).to_contain_text("INT8 · QLoRA: QLoRA's base is 4-bit NF4")


def test_verification_traces_the_seed_model(page: Any, app_server: StreamlitServer) -> None:
    """The product's own check works on the model of its front page: higgs-audio's DualFFN routing is
    data-dependent, and the trace (sized-down copy, CPU fake tensors) answers with estimate vs trace."""
    from playwright.sync_api import expect

    from calculator.verify import run_verification

    open_page(page, app_server.url("/Verification", f"model={DEFAULT_MODEL}&precision=bf16&context=256&audio_share=0.5"))
    expect_no_exception(page)
    page.get_by_role("button", name="Run the trace").click()
    wait_for_app(page)
    main = page.locator("[data-testid='stMain']")
    expect(main).to_contain_text("Estimate vs trace")
    expect_no_exception(page)
    # The page's error metric is the library's for the same run (2 of 28 layers, audio share 0.5).
    spec = resolve_model(DEFAULT_MODEL, offline=True).spec
    w = Workload(mode="inference", precision="bf16", context_length=256, batch_size=1, audio_token_share=0.5)
    data = run_verification(spec, w, level="trace", timeout=120, layers=2)
    error = page.locator("[data-testid='stMetric']").filter(has_text="Error").locator("[data-testid='stMetricValue']")
    expect(error).to_have_text(f"{data['total']['error_pct']:+.1f}%")
    save_screenshot(page, "verification-seed-trace", full_page=False)


def test_text_to_speech_model_counts_its_audio_codec(page: Any, app_server: StreamlitServer) -> None:
    """The seed's model is TTS: its breakdown carries the audio codec its serving stack loads on the GPU."""
    from playwright.sync_api import expect

    open_page(page, app_server.url("/"))
    expect(page.locator("[data-testid='stMain']")).to_contain_text("Audio codec (TTS)")
    expect(widget(page, "stCheckbox", "Audio codec on this GPU")).to_be_visible()
    expect_no_exception(page)


def test_first_visit_of_a_fresh_server_on_a_shared_page_link(page: Any) -> None:
    """Streamlit runs a fresh server's sessions in its legacy pages/ mode until st.navigation is called
    once: a shared /Compare link as the first visit showed "app" and file names in the sidebar. The
    pages now rerun through app.py's navigation, keeping the path and the link's settings."""
    from playwright.sync_api import expect

    with StreamlitServer(REPO_ROOT / "app.py") as fresh:
        open_page(page, fresh.url("/Compare", "precision=int4"))
        expect_no_exception(page)
        links = page.locator("[data-testid='stSidebarNav'] [data-testid='stSidebarNavLink']")
        expect(links).to_have_count(len(NAV_PAGES))
        assert [links.nth(i).inner_text().strip().splitlines()[-1].strip() for i in range(links.count())] == [p.title for p in NAV_PAGES]
        assert urlsplit(page.url).path == "/Compare", page.url
        expect(page.locator("[data-testid='stMain'] h1").first).to_have_text("Compare models and settings")
        assert query(page).get("precision") == "int4"


def test_stack_versions_from_a_link_change_the_peak_and_say_so(page: Any, app_server: StreamlitServer) -> None:
    """A link naming an older stack (transformers <= 4.35's tuple cache, generating 512 tokens) shows that
    stack's peak, the selector set to it, and the note saying what was assumed."""
    from playwright.sync_api import expect

    from calculator.stacks import STACKS

    params = {"model": "meta-llama/Llama-3.2-3B", "precision": "bf16", "context": "4096", "gen": "512", "stack": "transformers-4.35"}
    open_page(page, app_server.url("/", "&".join(f"{k}={v}" for k, v in params.items())))
    expect_no_exception(page)
    expect_peak(page, page_total_bytes(**params))
    assert page_total_bytes(**params) > page_total_bytes(**{**params, "stack": "current"})
    # The note names the stack (markdown shows its "<=" as "≤") and what it changes.
    expect(page.locator("[data-testid='stMain']")).to_contain_text(f"Stack: {STACKS['transformers-4.35'].label}.".replace("<=", "≤").replace(">=", "≥"))
    expect(page.locator("[data-testid='stMain']")).to_contain_text("a decode step holds the previous cache and the new one at once")


# --------------------------------------------------------------------------------------------
# A projector: 1280 x 720
# --------------------------------------------------------------------------------------------

PROJECTOR = {"width": 1280, "height": 720}
# Elements whose text the page must show whole: a cut one has content wider than its box.
_CUT_TEXT = """() => [...document.querySelectorAll(
    "[data-testid='stMetricValue'] div, [data-testid='stMetricLabel'] p, [data-testid='stButton'] button p, " +
    "[data-testid='stDownloadButton'] button p, [data-testid='stCode'] pre")]
    .filter(e => e.offsetParent !== null)
    .map(e => [e.innerText.slice(0, 60), e.scrollWidth > e.clientWidth + 1])"""
# Plotly: the first chart's legend must start below its title.
_LEGEND_UNDER_TITLE = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart']")].map(chart => {
    const title = chart.querySelector('.gtitle'), legend = chart.querySelector('.legend');
    if (!title || !legend) return true;
    return legend.getBoundingClientRect().top >= title.getBoundingClientRect().bottom - 1; })"""


@pytest.mark.parametrize("query", ["mode=lora", "runtime=vllm"], ids=["lora", "vllm"])
def test_projector_size_cuts_no_text_and_no_legend_runs_into_its_title(page: Any, app_server: StreamlitServer, query: str) -> None:
    """At 1280 x 720 the headline read 'Cheapest GPU that …' and 'catalog (ex…', 'Download J…', the vllm serve
    commands ran off the edge, and the breakdown's four-row legend ran into its title."""
    page.set_viewport_size(PROJECTOR)
    open_page(page, app_server.url("/", query))
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stPlotlyChart'] .legend\").length >= 2")
    assert page.locator(EXCEPTION).count() == 0
    shown = page.evaluate(_CUT_TEXT)
    assert len(shown) >= 6 and [text for text, cut in shown if cut] == []  # the 4 metrics and their labels at least
    assert all(page.evaluate(_LEGEND_UNDER_TITLE))


def test_trl_on_the_seed_model_switches_to_the_run_it_sized(page: Any, app_server: StreamlitServer) -> None:
    """LoRA on the default page: the red box says TRL cannot start and the button switches the link to HF Trainer
    with the same peak."""
    from playwright.sync_api import expect

    open_page(page, app_server.url("/", "mode=lora"))
    main = page.locator("[data-testid='stMain']")
    expect(main).to_contain_text("TRL SFTTrainer fails at its first step on this model")
    peak = page.locator("[data-testid='stMetric']").filter(has_text="Peak VRAM").locator("[data-testid='stMetricValue']").inner_text()
    page.get_by_role("button", name="Switch to HF Trainer with these settings").click()
    wait_for_app(page)
    expect(page).to_have_url(re.compile(r"trainer=hf-trainer"))
    expect(main).not_to_contain_text("fails at its first step")
    after = page.locator("[data-testid='stMetric']").filter(has_text="Peak VRAM").locator("[data-testid='stMetricValue']")
    expect(after).to_have_text(peak)
