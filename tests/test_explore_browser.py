"""The explorer in a real browser: Debian's chromium driven by Playwright (never skipped: a
missing chromium fails loudly; .ci/run installs it). One browser for the module and one
server per model. Oracles: the seed's 2,432; the analysis's receptive field; the engine's
forward computed here, in this process, on the same input; screenshots go to the tmp dir."""
from __future__ import annotations

import os
import re

import pytest

from explore_server import Server, train_digits

import convscope as cs

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install it with apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A page of the explorer with its console errors collected."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=120_000)

    def text(self, selector):
        return self.page.inner_text(selector)

    def selected_layer(self):
        return self.page.eval_on_selector("#layer-list li.selected", "e => e.dataset.name")

    def click_unit(self, i, j):
        cell = int(self.page.eval_on_selector("#map-canvas", "c => c.dataset.cell"))
        before = self.page.eval_on_selector("#unit-value", "e => e.dataset.value || ''")
        self.page.click("#map-canvas", position={"x": j * cell + cell / 2, "y": i * cell + cell / 2})
        self.page.wait_for_function(f"document.querySelector('#unit-title').textContent.includes(', {i}, {j}]')"
                                    if before is not None else "true", timeout=60_000)

    def close(self):
        self.page.close()


MODELS = ["lenet5", "resnet18", "googlenet", "digits"]


@pytest.fixture(scope="module")
def digits_server(tmp_path_factory):
    run = tmp_path_factory.mktemp("digits-run")
    source = train_digits(str(run))
    server = Server(source, "--run", str(run))
    yield source, server
    assert server.stop() == 0


@pytest.fixture(scope="module", params=MODELS)
def served(request, digits_server):
    name = request.param
    if name == "digits":
        yield name, digits_server[0], digits_server[1]
        return
    server = Server(name)
    yield name, name, server
    assert server.stop() == 0


def _engine_model(source):
    """The model the server explores, built the same way (seed 0 or the checkpoint's weights)."""
    from convscope.spec.resolve import resolve
    found = resolve(source)
    if found.kind == "checkpoint":
        ckpt = cs.train.load_checkpoint(source)
        return ckpt.model, ckpt.preprocessing
    return found.model.build(found.input_shape, seed=0), None


def test_page_unit_click_and_another_image(served, browser, tmp_path):
    name, source, server = served
    page = Page(browser, server.url)
    try:
        layer = page.selected_layer()            # the page opens on the first conv layer
        model, prep = _engine_model(source)
        report = cs.analyze(model, model.input_shape)
        row = report.row(layer)
        assert row.type == "conv2d"
        h, w = row.output_shape[1:]
        i, j = h // 3, w // 2
        # Open channel 1 by clicking its tile in the overview, then click unit (i, j) of it.
        box = page.page.evaluate("""() => { const img = document.querySelector('#maps-img'), m = state.maps;
            const k = img.clientWidth / img.naturalWidth;
            return [(1.5 * (m.tile_drawn[1] + 1)) * k, 0.5 * (m.tile_drawn[0] + 1) * k]; }""")
        page.page.click("#maps-img", position={"x": box[0], "y": box[1]})
        page.page.wait_for_function("document.querySelector('#channel-title').textContent.startsWith('1 of')")
        channel = 1
        page.click_unit(i, j)
        assert page.text("#unit-title").startswith(f"{layer} [1, {i}, {j}]")
        # The outline's size is the analysis's receptive field of this layer.
        rect = page.page.eval_on_selector("#field-rect", "r => [r.dataset.size, r.getAttribute('visibility'),"
                                                         " +r.getAttribute('width'), +r.getAttribute('height')]")
        assert rect[0] == "x".join(str(s) for s in row.field.size) and rect[1] == "visible"
        assert rect[2:] == [row.field.size[1], row.field.size[0]]
        # The sum shown equals the engine's forward value at that unit, computed here.
        from convscope.explore.inputs import default_key, sample, to_model_input
        from convscope.viz.featuremaps import activation
        x = to_model_input(sample(default_key(model.input_shape)), model.input_shape, prep, model.dtype)
        expected = float(activation(model, x, layer)[0, channel, i, j])
        shown_sum = float(page.page.eval_on_selector("#unit-sum", "e => e.dataset.value"))
        shown_value = float(page.page.eval_on_selector("#unit-value", "e => e.dataset.value"))
        assert shown_sum == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert shown_value == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert f"y[0,0,0] = " in page.text("#unit-lines")  # the term-by-term line
        page.page.screenshot(path=str(tmp_path / f"explore-{name}-unit.png"), full_page=True)

        # Choosing another image changes the prediction.
        before = page.text("#predictions")
        other = _other_sample(server, name)
        page.page.select_option("#sample-select", other)
        page.page.wait_for_function(f"document.querySelector('#predictions').innerText !== {before!r}",
                                    timeout=60_000)
        after = page.text("#predictions")
        assert after != before
        if name == "digits":  # trained: the top class itself changes
            assert after.split(":")[0] != before.split(":")[0]
        page.page.screenshot(path=str(tmp_path / f"explore-{name}-other.png"), full_page=True)
        assert page.errors == []
    finally:
        page.close()


def _other_sample(server, name):
    """A built-in sample whose top class differs from the default's (trained model), else any."""
    status, first = server.get("/api/input")
    if name != "digits":
        return "flower"
    for k in range(1, 10):
        status, info = server.post_json("/api/input", {"sample": f"digit-{k}"})
        if info["top"][0]["class"] != first["top"][0]["class"]:
            server.post_json("/api/input", {"sample": "digit-0"})
            return f"digit-{k}"
    raise AssertionError("every digit sample got the same prediction")


@pytest.fixture(scope="module")
def seed_server():
    server = Server("conv2d(32, 5) -> relu", "--input", "3x32x32")
    yield server
    assert server.stop() == 0


def test_seed_layer_click_shows_2432(seed_server, browser, tmp_path):
    page = Page(browser, seed_server.url)
    try:
        page.page.click("#arch .node:has-text('conv2d(32, 5)')")
        page.page.wait_for_function("document.querySelector('#layer-params').textContent === '2,432'")
        # Seed 001: 3·5·5·32 = 2,400 weights + 32 biases = (3·5·5 + 1)·32 = 2,432 parameters.
        assert page.text("#layer-weights") == "2,400"
        assert page.text("#layer-biases") == "32"
        assert page.text("#layer-params") == "2,432"
        assert "params = (C_in·k_h·k_w + 1)·C_out = (3·5·5 + 1)·32 = 2,432" in page.text("#layer-explain")
        # The relu row has no parameters; clicking it changes the panel.
        page.page.click("#arch .node:has-text('1 relu')")
        page.page.wait_for_function("document.querySelector('#layer-params').textContent === '0'")
        page.page.screenshot(path=str(tmp_path / "explore-seed.png"), full_page=True)
        assert page.errors == []
    finally:
        page.close()


def test_no_class_scores_no_backward_panel(seed_server, browser):
    # "conv2d(32, 5) -> relu" outputs 32×28×28, not class scores: there is no class to explain,
    # so the backward panel is hidden and the API says why.
    page = Page(browser, seed_server.url)
    try:
        assert page.page.is_hidden("#backward-panel")
        status, body = seed_server.get("/api/saliency", {"class": 0})
        assert status == 400 and "not class scores" in body["error"]
        assert page.errors == []
    finally:
        page.close()


def test_digits_backward_and_run_panel(digits_server, browser, tmp_path):
    source, server = digits_server
    page = Page(browser, server.url)
    try:
        page.click_unit(2, 3)
        page.page.select_option("#class-select", "0")
        page.page.click("#saliency-button")
        page.page.wait_for_selector("#kernel-grad:not([hidden])")
        assert re.search(r"dL/dy = \S+", page.text("#kernel-grad-text"))
        # The confusion matrix is 10×10 plus a header row; its entries sum to the test split.
        rows = page.page.eval_on_selector_all("#confusion tr", "rs => rs.length")
        assert rows == 11
        cells = page.page.eval_on_selector_all("#confusion td", "ds => ds.map(d => d.textContent)")
        assert sum(int(c) for c in cells if c != "·") == 359
        page.page.screenshot(path=str(tmp_path / "explore-digits-backward.png"), full_page=True)
        assert page.errors == []
    finally:
        page.close()
