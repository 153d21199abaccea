"""Languages for what convscope says to people: ``--lang en|es|fr|vi|zh``.

English is the default and the source language. The language is ``--lang`` if given, else
the first of ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set (``es_ES.UTF-8``
-> ``es``; anything we have no catalog for, ``C`` or ``POSIX`` included, -> English), the
order gettext itself uses.

Catalogs are GNU gettext files under ``locale/<lang>/LC_MESSAGES/convscope.po`` (the
source, edited by hand or with Babel: see ``docs/translations.md``) with their compiled
``.mo`` beside them. The ``.mo`` files are committed; if one is missing (a checkout that
dropped binaries) the ``.po`` is read directly by :func:`read_po`, stdlib only, so a fresh
``pip install -e .`` always has working translations and Babel is needed only to edit them.

Two ways text gets translated:

* :func:`_` for messages written in the code (``_("with {values}:")``);
* :func:`translate`, for the derivations and tables that the analysis writes in English:
  every phrase of the vocabulary (:mod:`convscope.i18n.vocabulary`, the words a textbook in
  that language uses: es "pesos"/"sesgos", fr "poids"/"biais", vi "trọng số"/"độ lệch",
  zh "权重"/"偏置") is replaced where it stands as a whole word; formulas, symbols and
  numbers are never touched (no phrase holds a digit), so every number is the same in every
  language (tests/test_i18n.py checks each seed's answer). JSON output is never translated.
"""
from __future__ import annotations

import ast
import gettext
import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional

LANGUAGES = ("en", "es", "fr", "vi", "zh")
DOMAIN = "convscope"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
_ENV_ORDER = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_current = "en"
_catalogs: Dict[str, Dict[str, str]] = {}
_patterns: Dict[str, Optional[re.Pattern]] = {}


def detect(environ: Optional[Mapping[str, str]] = None) -> str:
    """The language the environment asks for (gettext's variable order), ``en`` if none fits."""
    environ = os.environ if environ is None else environ
    for name in _ENV_ORDER:
        value = environ.get(name)
        if not value:
            continue
        for item in value.split(":"):  # LANGUAGE may list several
            code = item.split(".")[0].split("@")[0].split("_")[0].lower()
            if code in LANGUAGES:
                return code
        return "en"
    return "en"


def choose(lang: Optional[str]) -> str:
    """Set the language for this process: ``lang`` (a --lang value) or the environment's."""
    global _current
    if lang is not None and lang not in LANGUAGES:
        from ..errors import ConvscopeError
        raise ConvscopeError(f"--lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    _current = lang or detect()
    return _current


def current() -> str:
    return _current


def catalog(lang: str) -> Dict[str, str]:
    """msgid -> msgstr for a language (empty for English), from the .mo, else from the .po."""
    if lang == "en":
        return {}
    if lang not in _catalogs:
        folder = LOCALE_DIR / lang / "LC_MESSAGES"
        mo = folder / f"{DOMAIN}.mo"
        if mo.is_file():
            with open(mo, "rb") as handle:
                messages = gettext.GNUTranslations(handle)._catalog
            table = {k: v for k, v in messages.items() if isinstance(k, str) and k and v}
        else:
            table = read_po(folder / f"{DOMAIN}.po")
        _catalogs[lang] = table
    return _catalogs[lang]


def _(message: str) -> str:
    """The message in the current language (itself when there is no translation)."""
    return catalog(_current).get(message, message)


def translate(text: str, lang: Optional[str] = None) -> str:
    """English output text with every vocabulary phrase replaced by the language's term."""
    lang = _current if lang is None else lang
    table = catalog(lang)
    if not table or not text:
        return text
    if lang not in _patterns:
        phrases = sorted((p for p in table if "{" not in p), key=len, reverse=True)
        # Whole words only, never inside identifiers, keyword arguments (stride=2) or dotted names.
        body = "|".join(re.escape(p) for p in phrases)
        _patterns[lang] = re.compile(rf"(?<![\w.=])(?:{body})(?![\w=])") if phrases else None
    pattern = _patterns[lang]
    return pattern.sub(lambda m: table[m.group(0)], text) if pattern else text


def read_po(path: Path) -> Dict[str, str]:
    """A .po file's translations (msgid -> msgstr), stdlib only: the fallback when the
    compiled .mo is missing, and the oracle tests/test_i18n.py compares the .mo with."""
    table: Dict[str, str] = {}
    if not Path(path).is_file():
        return table
    key = None
    parts: Dict[str, list] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if line.startswith("#"):
            continue
        match = re.match(r"(msgid|msgstr)\s+(\".*\")$", line)
        if match:
            key = match.group(1)
            if key == "msgid" and parts.get("msgstr") is not None:
                _store(table, parts)
                parts = {}
            parts[key] = [ast.literal_eval(match.group(2))]
        elif line.startswith('"') and key:
            parts[key].append(ast.literal_eval(line))
        elif not line and parts.get("msgstr") is not None:
            _store(table, parts)
            parts, key = {}, None
    return table


def _store(table: Dict[str, str], parts: Dict[str, list]) -> None:
    msgid, msgstr = "".join(parts.get("msgid", [])), "".join(parts.get("msgstr", []))
    if msgid and msgstr:
        table[msgid] = msgstr


def add_argument(parser) -> None:
    """The ``--lang`` option of the commands that talk to people (summary, trace)."""
    parser.add_argument("--lang", choices=LANGUAGES, default=None,
                        help="language of the explanation, table headers and trace (default: from "
                             "LANGUAGE/LC_ALL/LC_MESSAGES/LANG, else English); JSON is never translated")


class TranslatingConsole:
    """A rich Console whose printed text and table headers/cells go through :func:`translate`
    (numbers are never touched); everything else is passed on unchanged."""

    def __init__(self, console):
        self._console = console

    def __getattr__(self, name):
        return getattr(self._console, name)

    def print(self, *objects, **kwargs):
        return self._console.print(*(self._translated(o) for o in objects), **kwargs)

    def _translated(self, value):
        if isinstance(value, str):
            return translate(value)
        columns = getattr(value, "columns", None)
        if columns is not None and _current != "en":  # a rich Table
            for column in columns:
                if isinstance(column.header, str):
                    column.header = translate(column.header)
                column._cells = [translate(c) if isinstance(c, str) else c for c in column._cells]
        return value
