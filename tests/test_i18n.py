"""--lang en|es|fr|vi|zh (issue 15 point 10): every seed question's answer in every language.

Oracles: the English output (the numbers must be the same, in the same order, in every
language: translation never touches a number); the terms a textbook in each language uses for
weights and biases (es "pesos"/"sesgos", fr "poids"/"biais", vi "trọng số"/"độ lệch", zh
"权重"/"偏置"); the .po sources, read with a stdlib parser, against the committed .mo files
(and Babel's own reader when installed); gettext's order of environment variables.
"""
import json
import re

import pytest

from convscope import i18n
from convscope.cli import main
from convscope.i18n.vocabulary import VOCABULARY

# The command that answers each seed question (docs/seeds/), as the README shows it.
SEEDS = {
    "000 (es) bias per filter: (3·5·5 + 1)·32 = 2,432":
        ["summary", "conv2d(32, 5)", "--input", "3x32x32", "--explain"],
    "001 (es) k1·3·3 + k1 + k2·5·5·k1 + k2":
        ["summary", "conv2d(k1, 3, padding=1) -> relu -> conv2d(k2, 5, padding=2)", "--input", "1xnxm"],
    "001 bound":
        ["summary", "conv2d(k1, 3, padding=1) -> relu -> conv2d(k2, 5, padding=2)", "--input", "1x28x28",
         "--set", "k1=32,k2=64", "--explain"],
    "002 (vi) dW = [0.3, 0.4], dA_prev = [-0.03, 0.01, 0.1]":
        ["trace", "conv1d", "--x", "1,2,3", "--w", "0.3,0.5", "--b", "0", "--dy=-0.1,0.2"],
    "003 (zh) and 004 (fr): 34,944 vs 105,705,600; 9,216 -> 4,096":
        ["summary", "alexnet2012", "--explain"],
}
TERMS = {"es": ("pesos", "sesgos"), "fr": ("poids", "biais"), "vi": ("trọng số", "độ lệch"), "zh": ("权重", "偏置")}
NUMBER = re.compile(r"−?-?\d[\d,]*(?:\.\d+)?")


def render(capsys, argv, lang):
    assert main([*argv, "--lang", lang]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_every_seed_answer_has_the_same_numbers_in_every_language(capsys, seed):
    english = render(capsys, SEEDS[seed], "en")
    numbers = NUMBER.findall(english)
    assert len(numbers) > 5
    for lang, (weights, biases) in TERMS.items():
        text = render(capsys, SEEDS[seed], lang)
        assert NUMBER.findall(text) == numbers, lang
        assert text != english
        if not seed.startswith("002"):
            assert weights in text and biases in text, (lang, text[:400])
    if seed.startswith("003"):
        assert "105,705,600" in english and "37,752,832" in english and "9,216" in english
    if seed.startswith("002"):
        assert "= 0.3" in english and "= −0.03" in english


def test_the_explanation_uses_the_languages_words(capsys):
    es = render(capsys, SEEDS["000 (es) bias per filter: (3·5·5 + 1)·32 = 2,432"], "es")
    assert "sesgos = C_out = 32 (uno por filtro" in es and "parámetros = (C_in·k_h·k_w + 1)·C_out" in es
    zh = render(capsys, SEEDS["003 (zh) and 004 (fr): 34,944 vs 105,705,600; 9,216 -> 4,096"], "zh")
    assert "不共享参数时 = C_out·H_out·W_out·(C_in·k_h·k_w + 1)" in zh and "= 105,705,600" in zh
    fr = render(capsys, SEEDS["003 (zh) and 004 (fr): 34,944 vs 105,705,600; 9,216 -> 4,096"], "fr")
    assert "paramètres = (in + 1)·out = (9,216 + 1)·4,096 = 37,752,832" in fr
    vi = render(capsys, SEEDS["002 (vi) dW = [0.3, 0.4], dA_prev = [-0.03, 0.01, 0.1]"], "vi")
    assert "lan truyền ngược: gradient của trọng số" in vi
    # Code stays code: layer calls and keyword arguments are never translated.
    assert "conv2d(96, 11, stride=4)" in fr and "flatten 256×6×6 = 9,216" in fr


def test_json_is_the_same_in_every_language(capsys):
    outputs = {lang: render(capsys, ["summary", "alexnet2012", "--format", "json", "--explain"], lang)
               for lang in i18n.LANGUAGES}
    assert len(set(outputs.values())) == 1
    assert json.loads(outputs["zh"])["total_params"] == 60_965_224


def test_language_from_the_environment(capsys, monkeypatch):
    assert i18n.detect({"LANG": "fr_FR.UTF-8"}) == "fr"
    assert i18n.detect({"LANG": "C.UTF-8"}) == "en" and i18n.detect({}) == "en"
    assert i18n.detect({"LC_ALL": "es_ES.UTF-8", "LANG": "zh_CN.UTF-8"}) == "es"  # LC_ALL wins
    assert i18n.detect({"LANGUAGE": "de:vi", "LANG": "fr_FR"}) == "vi"
    assert i18n.detect({"LANG": "de_DE.UTF-8"}) == "en"
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "vi_VN.UTF-8")
    assert main(SEEDS["000 (es) bias per filter: (3·5·5 + 1)·32 = 2,432"]) == 0
    assert "trọng số = C_out·C_in·k_h·k_w = 32·3·5·5 = 2,400" in capsys.readouterr().out
    assert main([*SEEDS["000 (es) bias per filter: (3·5·5 + 1)·32 = 2,432"], "--lang", "en"]) == 0
    assert "weights = C_out·C_in·k_h·k_w = 32·3·5·5 = 2,400" in capsys.readouterr().out


@pytest.mark.parametrize("lang", [l for l in i18n.LANGUAGES if l != "en"])
def test_catalogs_are_complete_compiled_and_number_free(lang):
    folder = i18n.LOCALE_DIR / lang / "LC_MESSAGES"
    po = i18n.read_po(folder / "convscope.po")
    i18n._catalogs.pop(lang, None)
    assert i18n.catalog(lang) == po  # the committed .mo is the .po compiled
    assert set(VOCABULARY) <= set(po)
    for english, translated in po.items():
        assert not re.search(r"\d", english) and not re.search(r"\d", translated)
        assert re.findall(r"{\w+}", english) == re.findall(r"{\w+}", translated)
    babel = pytest.importorskip("babel.messages.pofile")
    with open(folder / "convscope.po", "rb") as handle:
        catalog = babel.read_po(handle)
    assert {m.id: m.string for m in catalog if m.id} == po


def test_missing_mo_falls_back_to_the_po(tmp_path, monkeypatch):
    """A checkout without the binary .mo still translates (stdlib reader)."""
    source = i18n.LOCALE_DIR / "es" / "LC_MESSAGES" / "convscope.po"
    (tmp_path / "es" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "es" / "LC_MESSAGES" / "convscope.po").write_bytes(source.read_bytes())
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "_catalogs", {})
    monkeypatch.setattr(i18n, "_patterns", {})
    assert i18n.translate("weights = 3·5·5 (one per filter, shared by every position and every input channel)",
                          "es") == "pesos = 3·5·5 (uno por filtro, compartido por todas las posiciones y todos " \
                                   "los canales de entrada)"


def test_bad_language_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "alexnet", "--lang", "de"])
    assert "invalid choice" in capsys.readouterr().err
