"""The HTML report, the paper report builder and the CLI around them (tiny models)."""

import base64
import json
import logging
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.corpus.timings import PhoneSpan
from gradnap.defaults import REPORT
from gradnap.method.result import Result
from gradnap.method.run import GradNAP
from gradnap.report.page import Report
from gradnap.report.paper import build_report


class Utt:
    def __init__(self, uid, n_frames):
        self.id = uid
        self.speaker = "s"
        # alternating phones, 0.1 s each, covering the utterance
        dur = n_frames * 0.008
        edges = np.arange(0.0, dur + 1e-9, 0.1)
        if edges[-1] < dur:
            edges = np.append(edges, dur)
        names = ["AA", "AE", "T", "IY", "UW"]
        self.phones = tuple(
            PhoneSpan(names[i % len(names)], float(a), float(b))
            for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
        )


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return Wav2Letter(ModelConfig("tiny", (6,) * 8 + (10, 10, 29))).eval()


@pytest.fixture(scope="module")
def tiny_result():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    data = [
        (Utt(f"u{i}", 150 + 7 * i), torch.randn(128, 150 + 7 * i, generator=g)) for i in range(6)
    ]
    # totals only: the paper's figures (the cluster score's lead: `folded_result`)
    nap = GradNAP(model, groupings=("grapheme", "phoneme"), min_count=1, examples="all", folds=1)
    return model, nap.collect(data, progress=False)


def test_report_embeds_figures_and_escapes(tmp_path):
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    r = Report("a <title>")
    r.heading("h & h")
    r.figure("line", fig, "caption <b>")
    r.table(["layer", "score"], [["x", 0.5], ["y", None], ["z", float("nan")]])
    index = r.write(tmp_path / "rep")
    html = index.read_text()
    assert "a &lt;title&gt;" in html and "caption &lt;b&gt;" in html
    png = (tmp_path / "rep" / "line.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(embedded) == png
    assert html.count("undefined") == 2 and "0.500" in html
    assert "http" not in html  # opens offline: nothing to fetch


def test_report_page_closes_pyplot_figures_only_when_pyplot_is_loaded(tmp_path):
    import matplotlib.figure
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    r = Report("t")
    r.figure("a", fig, "a pyplot figure")
    assert not plt.fignum_exists(fig.number)
    plain = matplotlib.figure.Figure()
    plain.add_subplot().plot([0, 1])
    r.figure("b", plain, "a plain figure")
    r.write(tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"a.png", "b.png"}


def test_import_of_the_report_package_is_light():
    import subprocess
    import sys

    code = (
        "import sys, gradnap.report as r; assert 'Report' in dir(r); "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "matplotlib" not in loaded and "torch" not in loaded
    import gradnap.report

    assert gradnap.report.Report is Report and gradnap.report.build_report is build_report


def test_build_report_has_every_figure(tiny_result, tmp_path):
    model, result = tiny_result
    index = build_report(result, tmp_path, model=model)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "input_gradnaps.png" in names and "silhouettes.png" in names
    assert "action_potentials_layer2_AE.png" in names and "action_potentials_layer2_T.png" in names
    assert "dendrogram_layer10.png" in names and "listening_offsets.png" in names
    html = index.read_text()
    assert html.count("<figure") == len(names)
    assert "<h2>Where the model listens</h2>" in html
    assert f"{result.meta.progress.examples} examples)" in html  # every example has an offset
    assert "optimal input" in html  # model given: optimal inputs drawn
    assert "one optimal input for those" in html  # one joint image, and the caption says so
    assert "r in the legend is a neuron&#x27;s responsiveness" in html
    assert "layer10 is the default: the last hidden layer" in html  # why this dendrogram
    # provenance: a compact table of name/value pairs, two pairs per row
    prov = html[html.index("<h2>Provenance</h2>") :]
    assert prov.index('<table class="kv">') < 40 and "<th>options.folds</th>" in prov
    assert (tmp_path / "silhouettes.json").is_file()


def test_build_report_from_file_without_model_and_missing_groups(tiny_result, tmp_path):
    _, result = tiny_result
    path = result.save(tmp_path / "r.npz")
    config = replace(REPORT, input_groups=("AA", "ZH"), action_groups=("ZH",))
    index = build_report(Result.load(path), tmp_path / "rep", config=config)
    html = index.read_text()
    assert "input GradNAP of ZH" in html and "action potentials of ZH" in html
    assert not list((tmp_path / "rep").glob("action_potentials_*"))


def test_nap_silhouettes_are_the_clustering_of_the_nap_profiles(tiny_result):
    from gradnap.analysis.clustering import cluster_layers
    from gradnap.report.paper import result_silhouettes

    _, result = tiny_result
    assert result.has_naps
    table = result_silhouettes(result, ["grapheme", "phoneme"], kind="nap")
    assert table.kind == "nap"
    gradnap = result_silhouettes(result, ["grapheme", "phoneme"])
    for grouping in ("grapheme", "phoneme"):
        expected = cluster_layers(
            {layer: result.profiles(layer, grouping, kind="nap") for layer in result.layers}
        )
        assert list(table.clusterings[grouping]) == result.layers
        for layer, c in expected.items():
            np.testing.assert_array_equal(table.clusterings[grouping][layer].scores, c.scores)
        # NAPs are other profiles than GradNAPs: their distances differ
        assert not np.allclose(
            table.clusterings[grouping]["layer3"].distances,
            gradnap.clusterings[grouping]["layer3"].distances,
        )


def test_build_report_nap_section(tiny_result, tmp_path):
    import json

    from gradnap.report.paper import result_silhouettes

    _, result = tiny_result
    index = build_report(result, tmp_path, config=replace(REPORT, nap_layer="layer3"))
    html = index.read_text()
    assert "<h2>NAP baseline</h2>" in html and "no NAP sums" not in html
    assert (tmp_path / "naps_layer3.png").is_file() and (tmp_path / "silhouettes_nap.png").is_file()
    assert 'id="naps_layer3"' in html and 'id="silhouettes_nap"' in html
    assert "NAP baseline: mean silhouette per layer" in html
    saved = json.loads((tmp_path / "silhouettes_nap.json").read_text())
    expected = result_silhouettes(result, list(saved), kind="nap")
    assert list(saved) == ["grapheme", "phoneme"]
    for grouping, per_layer in saved.items():
        for layer, c in per_layer.items():
            want = expected.clusterings[grouping][layer]
            if want.n_defined:
                assert c["mean_silhouette"] == pytest.approx(want.mean_silhouette)
            else:
                assert c["mean_silhouette"] is None
    # the GradNAP silhouettes are not the NAP ones
    assert json.loads((tmp_path / "silhouettes.json").read_text()) != saved


def test_report_and_plots_without_naps_say_so(tmp_path):
    from gradnap.cli import main
    from gradnap.errors import GradnapError
    from gradnap.report.paper import nap_figure, result_silhouettes

    g = torch.Generator().manual_seed(2)
    data = [(Utt(f"v{i}", 160), torch.randn(128, 160, generator=g)) for i in range(2)]
    nap = GradNAP(tiny_model(), groupings=("phoneme",), min_count=1, examples="all", naps=False)
    result = nap.collect(data, progress=False)
    assert not result.has_naps
    index = build_report(result, tmp_path / "rep")
    html = index.read_text()
    assert "<h2>NAP baseline</h2>" in html and "holds no NAP sums" in html
    written = {f.name for f in (tmp_path / "rep").iterdir()}
    assert not [n for n in written if n.startswith(("naps_", "silhouettes_nap"))]
    assert 'id="silhouettes_nap"' not in html and 'id="naps_' not in html
    assert (tmp_path / "rep" / "silhouettes.png").is_file()  # the rest is there
    with pytest.raises(GradnapError, match="no NAP sums"):
        nap_figure(result, "layer2", ["AA"], "phoneme")
    with pytest.raises(GradnapError, match="no NAP sums"):
        result_silhouettes(result, ["phoneme"], kind="nap")
    path = result.save(tmp_path / "r.npz")
    out = str(tmp_path / "x.png")
    assert main(["plot", "naps", str(path), "--out", out, "--groups", "AA"]) == 2
    assert main(["plot", "silhouettes", str(path), "--out", out, "--naps"]) == 2
    assert main(["plot", "silhouettes", str(path), "--out", out]) == 0


def test_build_report_unknown_layer_lists_layers(tiny_result, tmp_path):
    from gradnap.errors import GradnapError

    _, result = tiny_result
    with pytest.raises(GradnapError, match="layer1, layer2"):
        build_report(result, tmp_path, config=replace(REPORT, action_layer="nope"))


def test_report_and_plot_cli(tiny_result, tmp_path):
    from gradnap.cli import main

    _, result = tiny_result
    path = result.save(tmp_path / "r.npz")
    assert main(["report", str(path), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "optimal input of those neurons" not in html  # not collected on the shipped model
    for kind, extra in [
        ("input", ["--groups", "AA,T"]),
        ("action", ["--layer", "layer2", "--group", "AE", "--grouping", "phoneme"]),
        ("silhouettes", []),
        ("silhouettes", ["--naps"]),
        ("naps", ["--groups", "AA,T", "--layer", "layer3"]),
        ("naps", []),
        ("dendrogram", ["--layer", "layer3"]),
    ]:
        out = tmp_path / f"{kind}.png"
        assert main(["plot", kind, str(path), "--out", str(out), *extra]) == 0
        assert out.read_bytes()[:4] == b"\x89PNG"
    assert (
        main(["plot", "dendrogram", str(path), "--out", str(tmp_path / "x.png"), "--layer", "zz"])
        == 2
    )
    assert main(["plot", "naps", str(path), "--out", str(tmp_path / "y.png"), "--layer", "zz"]) == 2


def test_model_of_the_result_draws_the_optimal_inputs_another_does_not(
    tiny_result, tmp_path, caplog
):
    from gradnap.asr.modelfile import save_model
    from gradnap.cli.common import result_model
    from gradnap.errors import GradnapError

    model, result = tiny_result
    path = tmp_path / "r.npz"
    mine = tmp_path / "mine.pt"
    save_model(mine, model)
    assert result_model(result, str(mine), path) is not None
    assert result_model(result, "none", path) is None
    assert result_model(result, None, path) is None  # not collected on the shipped model
    with pytest.raises(GradnapError, match="r.npz was collected on another model"):
        result_model(result, "default", path)
    # the library: another model's optimal inputs are left out, with a note; sections logged
    caplog.set_level(logging.INFO, logger="gradnap.report.paper")
    config = replace(REPORT, input_groups=("AA",), action_groups=("AE",), cluster_groupings=())
    index = build_report(result, tmp_path / "rep", model=tiny_model(seed=1), config=config)
    html = index.read_text()
    assert "optimal input of those neurons" not in html
    assert "the model given is not the one of the result" in html
    logged = [r.getMessage() for r in caplog.records if r.name == "gradnap.report.paper"]
    assert "report: action potentials in layer2" in logged  # no optimal inputs
    assert logged[-1].startswith(f"report: {html.count('<figure')} figures in ")


# --------------------------------------------------------------------------------------
# The lead: the cross-validated cluster score (docs/method.md §6)


@pytest.fixture(scope="module")
def folded_result():
    from gradnap.method.groupings import random_label_grouping

    g = torch.Generator().manual_seed(3)
    data = [
        (Utt(f"f{i}", 140 + 5 * i), torch.randn(128, 140 + 5 * i, generator=g)) for i in range(15)
    ]
    chance = random_label_grouping(
        {"AA": 1, "AE": 1, "T": 1, "IY": 1, "UW": 1}, seed=0, name="chance_phoneme"
    )
    nap = GradNAP(
        tiny_model(),
        ("input", "layer2", "layer3"),  # few layers: the score's 75 clusterings per layer
        groupings=("grapheme", "phoneme", chance),
        min_count=1,
        examples="all",
        folds=5,
    )
    return nap.collect(data, progress=False)


def test_report_leads_with_the_cluster_score(folded_result, tmp_path):
    import json

    from gradnap.analysis.crossval import cluster_score_table, score_difference

    result = folded_result
    index = build_report(result, tmp_path)
    html = index.read_text()
    lead = "<h2>Graphemes vs phonemes: cross-validated cluster score</h2>"
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings[:2] == ["Run", lead[4:-5]]  # before every figure of the paper
    assert html.index('id="cluster_scores"') < html.index('id="input_gradnaps"')
    assert (tmp_path / "cluster_scores.png").is_file()
    assert "± 2 jackknife SE (5 folds" in html
    assert "chance_phoneme (random labels): within ± 2 SE of 0 in" in html
    assert "grapheme − phoneme (difference beyond 2 SE of the difference" in html
    assert "phoneme score ± SE" in html and "grapheme − phoneme ± SE" in html
    assert "silhouette scores per layer (the paper&#x27;s measure)" in html
    assert "no random-label curves (collected with folds" in html  # per-fold sums only
    saved = json.loads((tmp_path / "cluster_scores.json").read_text())
    assert saved["folds"] == 5 and saved["sigmas"] == 2.0
    assert saved["real"] == ["grapheme", "phoneme"] and saved["chance"] == ["chance_phoneme"]

    def same(saved_value, value):  # NaN is written as null: valid JSON
        return saved_value is None if np.isnan(value) else saved_value == pytest.approx(value)

    want = cluster_score_table(result, ["grapheme", "phoneme", "chance_phoneme"])
    for g, per in want.scores.items():
        assert list(saved["groupings"][g]) == result.layers
        for layer, s in per.items():
            got = saved["groupings"][g][layer]
            assert same(got["score"], s.score) and same(got["uncertainty"], s.uncertainty)
            assert got["above_chance"] == bool(s.score > 2 * s.uncertainty)
    for layer in result.layers:
        d = score_difference(want.scores["grapheme"][layer], want.scores["phoneme"][layer])
        got = saved["differences"]["grapheme - phoneme"][layer]
        assert same(got["difference"], d.difference) and same(got["uncertainty"], d.uncertainty)
        assert got["clear"] == bool(abs(d.difference) > 2 * d.uncertainty)


def test_report_without_folds_says_how_to_get_them(tiny_result, tmp_path):
    _, result = tiny_result
    assert result.folds == 1
    html = build_report(result, tmp_path).read_text()
    assert "<h2>Graphemes vs phonemes: cross-validated cluster score</h2>" in html
    assert "Not computed: the result has 1 fold(s)" in html
    assert "gradnap collect --folds 5" in html
    assert not (tmp_path / "cluster_scores.json").exists()
    assert not (tmp_path / "cluster_scores.png").exists()
    assert (tmp_path / "silhouettes.png").is_file()  # the paper's figures follow


def _cs(score, se=float("nan"), jackknife=()):
    from gradnap.analysis.crossval import ClusterScore

    return ClusterScore(score, se, (), (), 8, 5, tuple(jackknife))


def test_cluster_score_findings_name_the_layers_from_the_numbers():
    from gradnap.analysis.crossval import ClusterScoreTable
    from gradnap.report.paper import cluster_score_findings

    layers = ["input", "layer1", "layer2", "layer3", "layer4"]
    base = np.array([0.0, 0.01, -0.01, 0.02, -0.02])  # replicates: spread -> SE
    se = float(np.sqrt(4 / 5 * ((base - base.mean()) ** 2).sum()))

    def rep(score, scale=1.0):
        return _cs(score, se * scale, score + scale * base)

    table = ClusterScoreTable(
        {
            # above chance in input-layer1 and layer3; not in layer2 (1 SE) or layer4 (NaN SE)
            "grapheme": {
                "input": rep(0.5),
                "layer1": rep(0.4),
                "layer2": rep(se),
                "layer3": rep(0.3),
                "layer4": _cs(0.9),
            },
            # the same replicates shifted: differences have SE 0 where both move together
            "phoneme": {
                "input": rep(0.2),
                "layer1": rep(0.4),
                "layer2": rep(0.6),
                "layer3": rep(0.3, scale=-1.0),
                "layer4": rep(0.1),
            },
            "chance_grapheme": {la: rep(0.0) for la in layers},
            "chance_phoneme": {**{la: rep(0.0) for la in layers}, "layer2": rep(5 * se)},
        },
        {},
    )
    text = cluster_score_findings(
        table, ["grapheme", "phoneme"], ["chance_grapheme", "chance_phoneme"], 2.0
    )
    assert text[0] == (
        "grapheme: above chance (score > 2 SE) in 3 of 5 layers (input–layer1, layer3); "
        "no uncertainty (undefined score or jackknife) in layer4."
    )
    assert text[1] == "phoneme: above chance (score > 2 SE) in 5 of 5 layers (input–layer4)."
    assert text[2] == (
        "chance_grapheme (random labels): within ± 2 SE of 0 in all 5 layers, as the score's "
        "zero requires."
    )
    assert text[3].startswith("chance_phoneme (random labels): within ± 2 SE of 0 in 4 of 5")
    assert (
        f"not in layer2 {5 * se:+.3f} ± {se:.3f}: there the error bar does not cover 0" in (text[3])
    )
    # input: +0.3 with SE 0 (same replicates); layer1: 0; layer2: −0.6 + se, SE 0;
    # layer3: 0 with SE 2·se (opposite replicates); layer4: no replicates for grapheme
    assert text[4] == (
        "grapheme − phoneme (difference beyond 2 SE of the difference, jackknifed over the "
        "same delete-one-fold replicates): grapheme higher in input; phoneme higher in "
        "layer2; no clear difference in layer1, layer3–layer4."
    )
    assert len(text) == 5


def test_score_cells_say_what_is_undefined():
    from gradnap.report.paper import _pm

    assert _pm(0.1234, 0.0456) == "+0.123 ± 0.046"
    assert _pm(-0.5, float("nan")) == "-0.500 (no SE)"
    assert _pm(float("nan"), 0.1) == "undefined"


def test_silhouette_captions_say_what_the_random_labels_show():
    from types import SimpleNamespace

    from gradnap.report.paper import _random_label_note

    both = SimpleNamespace(groupings=["grapheme", "phoneme", "chance_phoneme"])
    # drawn (collected without folds): dashed, and no floor
    assert "dashed: the same groupings with random labels" in _random_label_note(
        both, ["phoneme", "chance_phoneme"]
    )
    assert "no floor" in _random_label_note(both, ["phoneme", "chance_phoneme"], nap=True)
    # collected with folds: per-fold sums only, no curve
    assert "no random-label curves" in _random_label_note(both, ["phoneme"])
    # none collected: nothing to say
    assert _random_label_note(SimpleNamespace(groupings=["phoneme"]), ["phoneme"]) == ""


def test_key_value_tables_and_long_lines_wrap(tmp_path):
    report = Report("kv")
    report.key_values([("a", 1), ("b", "two"), ("c", 0.5)], columns=2)
    report.pre("layers: " + ", ".join(f"layer{i} (96x74)" for i in range(40)))
    html = report.write(tmp_path).read_text()
    body = html[html.index('<table class="kv">') :]
    rows = re.findall(r"<tr>(.*?)</tr>", body[: body.index("</table>")])
    assert rows == [
        "<th>a</th><td>1</td><th>b</th><td>two</td>",
        "<th>c</th><td>0.500</td>",
    ]
    assert "white-space: pre-wrap" in html  # a long summary line wraps inside its box


_CHECK = """<script>
window.addEventListener('load', () => {
  const bad = [];
  const right = document.body.getBoundingClientRect().right;
  document.querySelectorAll('img').forEach((im, i) => {
    if (!im.complete || im.naturalWidth === 0) bad.push('image ' + (im.alt || i) + ' does not decode');
  });
  document.querySelectorAll('body, p, pre, table, figure, figcaption, h1, h2').forEach(el => {
    const what = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
      (el.textContent || '').trim().slice(0, 40) + '"';
    if (el.scrollWidth > el.clientWidth + 1) bad.push(what + ' overflows its box');
    if (el.getBoundingClientRect().right > right + 1) bad.push(what + ' sticks out of the page');
  });
  const out = document.createElement('div');
  out.id = 'gradnap-check';
  out.textContent = JSON.stringify({images: document.images.length, problems: bad});
  document.body.appendChild(out);
});
</script>"""


def _browser() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_report_in_a_headless_browser(tiny_result, tmp_path):
    """The report opens in a real browser at a laptop width (1280 px): every image
    decodes and nothing overflows its box. A screenshot is left in the test's directory."""
    import json
    import subprocess
    from pathlib import Path

    browser = _browser()
    if browser is None:  # install it only now, for this test
        script = Path(__file__).resolve().parents[1] / "scripts" / "install_browser.sh"
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        browser = _browser()
        if browser is None:
            pytest.skip(f"no headless browser, and it cannot be installed: {done.stderr.strip()}")
    model, result = tiny_result
    index = build_report(result, tmp_path / "report", model=model)
    page = index.read_text()
    checked = index.with_name("checked.html")
    checked.write_text(page.replace("</body>", _CHECK + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    flags.append("--virtual-time-budget=10000")
    dom = subprocess.run(
        [*flags, "--window-size=1280,900", "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    found = re.search(r'<div id="gradnap-check">(.*?)</div>', dom)
    assert found, "the browser did not run the page's check"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] == page.count("<img ") > 0
    assert check["problems"] == []
    shot = f"--screenshot={tmp_path / 'report.png'}"  # the whole page, to look at
    subprocess.run(
        [*flags, "--window-size=1280,8000", shot, index.as_uri()], capture_output=True, timeout=180
    )


def test_nap_section_without_nap_sums_of_random_labels(tmp_path):
    """Without folds, random-label groupings keep totals but no NAP sums: the NAP
    silhouettes leave them out and say so (the report used to fail)."""
    from gradnap.method.groupings import random_label_grouping

    g = torch.Generator().manual_seed(4)
    data = [
        (Utt(f"r{i}", 150 + 6 * i), torch.randn(128, 150 + 6 * i, generator=g)) for i in range(6)
    ]
    chance = random_label_grouping({"AA": 1, "T": 1, "IY": 1}, seed=0, name="chance_phoneme")
    nap = GradNAP(
        tiny_model(), groupings=("grapheme", "phoneme", chance), min_count=1, examples="all",
        folds=1,
    )  # fmt: skip
    result = nap.collect(data, progress=False)
    assert result.has_profiles("chance_phoneme")
    assert not result.has_profiles("chance_phoneme", kind="nap")
    assert result.has_profiles("phoneme", kind="nap")
    html = build_report(result, tmp_path).read_text()
    assert "no NAP curve for chance_phoneme (random labels keep no NAP sums)" in html
    saved = json.loads((tmp_path / "silhouettes_nap.json").read_text())
    assert "chance_phoneme" not in json.dumps(saved) and "phoneme" in json.dumps(saved)
