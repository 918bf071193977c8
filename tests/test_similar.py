"""Similar models on the main page: the same family first, then the same task, then the closest in
size; each is a link that opens the main page for that model with every other input kept."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from calculator.resolve import resolve_catalog
from ui.compare import catalog_specs, catalog_task, family, similar_models
from ui.state import DEFAULT_MODEL

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def spec(model_id: str):
    return resolve_catalog(model_id).spec


def test_same_family_then_task_then_size():
    got = [s.model_id for s in similar_models(spec("meta-llama/Llama-3.1-8B"), catalog_specs(), task_of=catalog_task)]
    # Five llama-family models; among them the closest in size first (8.03B, 6.74B, 3.21B x2, 69.0B: |log ratio|).
    assert got == ["meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.2-3B",
                   "meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-2-70b-hf"]
    assert all(family(spec(m)) == "llama" for m in got)


def test_task_ranks_before_size_outside_the_family():
    bert = spec("google-bert/bert-base-uncased")  # the only bert (fill-mask) in the catalog
    candidates = [spec("facebook/opt-350m"), spec("Qwen/Qwen2.5-0.5B")]
    tasks = {"Qwen/Qwen2.5-0.5B": "fill-mask"}  # pretend: then the farther-in-size model with the same task comes first
    got = similar_models(bert, candidates, task_of=lambda m: tasks.get(m, catalog_task(m)))
    assert [s.model_id for s in got] == ["Qwen/Qwen2.5-0.5B", "facebook/opt-350m"]
    assert [s.model_id for s in similar_models(bert, candidates, task_of=catalog_task)] == ["facebook/opt-350m", "Qwen/Qwen2.5-0.5B"]


def _similar_links(at: AppTest) -> list[dict[str, list[str]]]:
    links = []
    for m in at.markdown:
        if m.value.startswith("**[") and "](./?" in m.value:
            href = m.value.split("](", 1)[1].split(")", 1)[0]
            links.append(parse_qs(urlsplit(href).query))
    return links


def test_main_page_links_keep_the_other_inputs():
    at = AppTest.from_file("../app.py", default_timeout=30)
    at.query_params.update({"model": "meta-llama/Llama-3.1-8B", "precision": "int4", "context": "8192", "mode": "qlora", "rates": "rtx-4090:0.2"})
    at.run()
    assert not at.exception
    assert "Similar models" in [h.value for h in at.header]
    links = _similar_links(at)
    assert [q["model"][0] for q in links] == [s.model_id for s in similar_models(spec("meta-llama/Llama-3.1-8B"), catalog_specs(), task_of=catalog_task)]
    for q in links:
        assert (q["precision"], q["context"], q["mode"], q["rates"]) == (["int4"], ["8192"], ["qlora"], ["rtx-4090:0.2"])
    # One click = open that link: the main page for that model, same setting.
    follow = AppTest.from_file("../app.py", default_timeout=30)
    follow.query_params.update({k: v[0] for k, v in links[0].items()})
    follow.run()
    assert not follow.exception
    assert follow.text_input(key="main.model").value == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert follow.selectbox(key="main.precision").value == "int4"


def test_default_page_suggests_models_near_the_seed():
    at = AppTest.from_file("../app.py", default_timeout=30).run()
    links = _similar_links(at)
    assert len(links) == 5 and all(q["model"][0] != DEFAULT_MODEL for q in links)
