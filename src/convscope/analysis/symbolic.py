"""Symbolic analysis: counts as polynomials when sizes are written as names.

``conv2d(k1, 3, padding=1) -> conv2d(k2, 5, padding=2)`` on ``--input CxHxW`` gives

    weights = k1·3·3·C + k2·5·5·k1          biases = k1 + k2
    params  = k1·3·3·C + k1 + k2·5·5·k1 + k2 = 9·C·k1 + 25·k1·k2 + k1 + k2
    MACs    = k1·H·W·C·3·3 + k2·H·W·k1·5·5 = H·W·k1·(9·C + 25·k2)   (factored)

(seed 001's answer ``k1·3·3 + k1 + k2·5·5·k1 + k2`` is the params line with C = 1).

This is a separate pass: the numeric engine (layers, :func:`convscope.analysis.analyze`) is
untouched and never sees a symbol. A layer type whose sizes may be symbols declares
``symbolic_counts(cls, args, input_shape) -> Counts`` beside its numeric rules (convolutions,
linear, sliding pools, flatten); the rule is the same formula written for sympy expressions
(``//`` on a sympy expression is its floor). Any other layer is evaluated numerically when
nothing about it is symbolic, or, when only its input is, probed numerically: a layer that
learns nothing and keeps its input's shape (relu, dropout, LRN ...) keeps the symbolic shape.
Validity checks that need numbers (a window larger than its input) are left to the numeric
analysis once values are bound.

Every count is kept as its factors too, so it prints as written in a textbook
(``C_out·k_h·k_w·C_in``, the order of seed 001) before sympy simplifies and factors the sum.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import ConvscopeError, format_count

Factors = Tuple[object, ...]


def sympy():
    import sympy as _sympy
    return _sympy


def symbol(name: str):
    """Sizes are positive integers, which lets sympy simplify ``floor`` of integer sums."""
    return sympy().Symbol(name, integer=True, positive=True)


def is_symbolic(value) -> bool:
    return hasattr(value, "free_symbols") and bool(value.free_symbols)


@dataclass
class Counts:
    """What a layer rule returns: the output shape (ints or sympy expressions) and the factors
    of its weights, biases and MACs (None when it has none)."""

    output_shape: Tuple[object, ...]
    weights: Optional[Factors] = None
    biases: Optional[Factors] = None
    macs: Optional[Factors] = None


@dataclass
class SymbolicRow:
    name: str
    type: str
    label: str
    input_shape: Tuple[object, ...]
    counts: Counts

    def term(self, what: str) -> Optional[Factors]:
        return getattr(self.counts, what)


@dataclass
class SymbolicReport:
    input: Tuple[object, ...]
    rows: List[SymbolicRow] = field(default_factory=list)

    @property
    def output(self):
        return self.rows[-1].counts.output_shape if self.rows else self.input

    def terms(self, what: str) -> List[Factors]:
        """Factor lists of every row's ``weights``, ``biases`` or ``macs``; ``params`` is the
        weights and biases of each row in turn (the textbook order)."""
        parts = ("weights", "biases") if what == "params" else (what,)
        return [f for row in self.rows for p in parts for f in [row.term(p)] if f is not None]

    def total(self, what: str):
        s = sympy()
        return s.Add(*[s.Mul(*f) for f in self.terms(what)]) if self.terms(what) else s.Integer(0)

    def symbols(self) -> List[str]:
        found = set()
        for value in self.input:
            found |= {str(v) for v in getattr(value, "free_symbols", ())}
        for what in ("params", "macs"):
            found |= {str(v) for v in self.total(what).free_symbols}
        for row in self.rows:
            for value in row.counts.output_shape:
                found |= {str(v) for v in getattr(value, "free_symbols", ())}
        return sorted(found)


# ----- printing ---------------------------------------------------------------------------

def show(expr) -> str:
    """``25*k1*k2 + 10*k1`` -> ``25·k1·k2 + 10·k1``; integers with thousands separators."""
    if isinstance(expr, int) or (hasattr(expr, "is_Integer") and expr.is_Integer):
        return format_count(int(expr))
    return _printer().doprint(expr).replace("**", "^").replace("*", "·")


_PRINTER = None


def _printer():
    """sympy's str printer, floors written ``⌊(H - 3)/2⌋`` (one fraction, as in the derivations)."""
    global _PRINTER
    if _PRINTER is None:
        s = sympy()
        from sympy.printing.str import StrPrinter

        class Printer(StrPrinter):
            def _print_floor(self, expr):
                return "⌊" + self._print(s.together(expr.args[0])) + "⌋"

            def _print_ceiling(self, expr):
                return "⌈" + self._print(s.together(expr.args[0])) + "⌉"

        _PRINTER = Printer()
    return _PRINTER


def show_factors(factors: Factors) -> str:
    """A product as written (``k2·5·5·k1``); factors equal to 1 are left out (seed 001's
    ``k1·3·3`` for one input channel)."""
    shown = [_factor(f) for f in factors if not (not is_symbolic(f) and int(f) == 1)]
    return "·".join(shown) if shown else "1"


def _factor(value) -> str:
    text = show(value)
    return f"({text})" if any(op in text for op in (" + ", " - ")) else text


def show_shape(shape) -> str:
    return "×".join(_factor(v) for v in shape)


def written(report: SymbolicReport, what: str) -> str:
    terms = report.terms(what)
    return " + ".join(show_factors(f) for f in terms) if terms else "0"


def forms(report: SymbolicReport, what: str) -> List[str]:
    """The total as written, expanded, and factored (each left out when it repeats the last)."""
    s = sympy()
    total = report.total(what)
    out = [written(report, what)]
    for form in (s.expand(total), s.factor(total)):
        text = show(form)
        if text not in out:
            out.append(text)
    return out


def evaluate(expr, values: Dict[str, int]) -> object:
    """The expression with bound symbols replaced (an int once nothing is left)."""
    s = sympy()
    if not hasattr(expr, "subs"):
        return expr
    bound = expr.subs({symbol(k): s.Integer(v) for k, v in values.items()})
    return int(bound) if not bound.free_symbols else bound


# ----- the pass ---------------------------------------------------------------------------

def to_sympy(value):
    """Spec values with :class:`convscope.spec.text.Symbol` markers -> sympy symbols."""
    from ..spec.text import Symbol
    if isinstance(value, Symbol):
        return symbol(value.name)
    if isinstance(value, list):
        return [to_sympy(v) for v in value]
    return value


def per_axis(value, ndim: int, name: str, owner: str) -> Tuple[object, ...]:
    """An int, symbol or list -> a tuple of ``ndim`` sizes (the rule of shapes.as_tuple)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * ndim
    if len(values) == 1 and ndim > 1:
        values = values * ndim
    if len(values) != ndim:
        raise ConvscopeError(f"{owner}: {name} needs {ndim} values, got {list(values)}")
    return values


def window_size(n, k, s=1, p_lo=0, p_hi=None, d=1):
    """``⌊(n + p_lo + p_hi − d·(k − 1) − 1)/s⌋ + 1`` for ints or sympy expressions
    (:func:`convscope.shapes.conv_output_size` without ceil mode)."""
    p_hi = p_lo if p_hi is None else p_hi
    span = n + p_lo + p_hi - d * (k - 1) - 1
    if is_symbolic(span) or is_symbolic(s):
        return sympy().floor(span / s) + 1 if s != 1 else span + 1
    return span // s + 1


def _arguments(cls, entry: dict, where: str) -> dict:
    """The constructor's keyword arguments with defaults, symbols as sympy symbols."""
    args = {k: to_sympy(v) for k, v in entry.items() if k != "type"}
    try:
        bound = inspect.signature(cls.__init__).bind(None, **args)
    except TypeError as error:
        raise ConvscopeError(f"{where}: {error}") from None
    bound.apply_defaults()
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
    for name, value in bound.arguments.items():
        named = is_symbolic(value) or (isinstance(value, list) and any(map(is_symbolic, value)))
        if named and isinstance(defaults.get(name), (bool, str, float)):
            raise ConvscopeError(f"{where}: {cls.type_name}'s {name} is not a size, so it cannot be a name "
                                 f"(got {value}); strings need quotes, e.g. padding='same'")
    return {k: v for k, v in bound.arguments.items() if k != "self"}


def _substitute(shape, probe: Dict[object, int]) -> Tuple[int, ...]:
    return tuple(int(v.subs(probe)) if is_symbolic(v) else int(v) for v in shape)


def _numeric(cls, args: dict, shape, where: str) -> Counts:
    """A layer with nothing symbolic in its arguments: its own numeric rules, exactly; when
    its input is symbolic, a probe decides whether it keeps the shape and learns nothing."""
    layer = cls(**args)
    free = set().union(*(getattr(v, "free_symbols", set()) for v in shape))
    if not free:
        shape = tuple(int(v) for v in shape)
        params = layer.param_shapes(shape)
        ordered = {k: tuple(v) for k, v in params.items()}
        weights = ordered.get("weight")
        macs = layer.macs(shape)
        return Counts(tuple(layer.output_shape(shape)),
                      weights=None if weights is None else _textbook_order(weights),
                      biases=ordered.get("bias"), macs=(macs,) if macs else None)
    # Two probes with different sizes: the rule must keep the shape and learn nothing at both.
    for base in (101, 211):
        probe = {sym: base + 2 * i for i, sym in enumerate(sorted(free, key=str))}
        numbers = _substitute(shape, probe)
        try:
            same = tuple(layer.output_shape(numbers)) == numbers and not layer.param_shapes(numbers) \
                and not layer.macs(numbers)
        except ConvscopeError:
            same = False
        if not same:
            raise ConvscopeError(f"{where}: {cls.type_name} has no symbolic rule for an input of "
                                 f"{show_shape(shape)}; bind the names with --set (e.g. --set "
                                 f"{sorted(map(str, free))[0]}=32) to count it")
    return Counts(tuple(shape))


def _textbook_order(weight_shape: Sequence[object]) -> Factors:
    """(C_out, C_in/G, k_h, k_w) -> C_out·k_h·k_w·C_in (seed 001's order); (out, in) unchanged."""
    shape = tuple(weight_shape)
    return (shape[0], *shape[2:], shape[1]) if len(shape) > 1 else shape


def analyze_symbolic(entries: List[dict], input_shape: Sequence[object]) -> SymbolicReport:
    """Walk a sequential model's spec entries (sizes may be :class:`Symbol` markers) over an
    input shape (ints, names or sympy expressions)."""
    from ..layers.registry import LAYER_TYPES

    shape = tuple(to_sympy(_as_marker(v)) if isinstance(v, str) else v for v in input_shape)
    report = SymbolicReport(input=shape)
    for index, entry in enumerate(entries):
        where = f"layers[{index}]"
        kind = entry.get("type")
        cls = LAYER_TYPES.get(kind)
        if cls is None:
            raise ConvscopeError(f"{where}: unknown layer type {kind!r}")
        if any(isinstance(v, (dict,)) or (isinstance(v, list) and v and isinstance(v[0], (dict, list)))
               for k, v in entry.items() if k not in ("type",)):
            raise ConvscopeError(f"{where}: symbolic analysis covers sequential models of single layers; "
                                 f"{kind} nests layers, so bind the names with --set to count it")
        args = _arguments(cls, entry, where)
        rule = getattr(cls, "symbolic_counts", None)
        has_symbols = any(is_symbolic(v) or (isinstance(v, list) and any(map(is_symbolic, v)))
                          for v in args.values())
        if rule is not None and (has_symbols or any(map(is_symbolic, shape))):
            counts = rule(args, shape)
        elif has_symbols:
            raise ConvscopeError(f"{where}: {kind} takes no sizes as names; write numbers there")
        else:
            counts = _numeric(cls, args, shape, where)
        report.rows.append(SymbolicRow(str(index), kind, _label(entry), shape, counts))
        shape = tuple(counts.output_shape)
    return report


def _as_marker(name: str):
    from ..spec.text import Symbol, check_symbol_name
    return Symbol(check_symbol_name(name, "--input"))


def _label(entry: dict) -> str:
    args = [f"{k}={_value(v)}" if k not in ("out_channels", "kernel_size", "out_features") else _value(v)
            for k, v in entry.items() if k != "type"]
    return f"{entry['type']}({', '.join(args)})" if args else entry["type"]


def _value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def parse_shape(text: str) -> Tuple[object, ...]:
    """``"Cx32x32"`` -> ``(C, 32, 32)`` (names as sympy symbols, numbers as ints)."""
    import re
    body = text.strip().strip("[]()")
    parts = [p for p in re.split(r"\s*[x×,]\s*|\s+", body) if p]
    if not parts:
        raise ConvscopeError(f"--input must be sizes joined by x, such as Cx32x32, got {text!r}")
    shape = []
    for part in parts:
        if re.fullmatch(r"\d+", part):
            if int(part) < 1:
                raise ConvscopeError(f"--input sizes must be positive, got {text!r}")
            shape.append(int(part))
        else:
            shape.append(symbol(_as_marker(part).name))
    return tuple(shape)


def parse_bindings(text: Optional[str]) -> Dict[str, int]:
    """``"k1=32,k2=64"`` -> ``{"k1": 32, "k2": 64}`` (positive integers only)."""
    from ..spec.text import check_symbol_name
    values: Dict[str, int] = {}
    if text is None:
        return values
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, sep, number = part.partition("=")
        name, number = name.strip(), number.strip()
        if not sep or not number.isdigit() or int(number) < 1:
            raise ConvscopeError(f"--set takes NAME=VALUE pairs with positive integers, such as "
                                 f"k1=32,k2=64; got {part!r}")
        values[check_symbol_name(name, "--set")] = int(number)
    return values


# ----- output -----------------------------------------------------------------------------

def row_cells(row: SymbolicRow) -> List[str]:
    """Output shape, weights, biases, params and MACs of a row, as written."""
    c = row.counts
    params = [f for f in (c.weights, c.biases) if f is not None]
    return [show_shape(c.output_shape),
            show_factors(c.weights) if c.weights else "0",
            show_factors(c.biases) if c.biases else "0",
            " + ".join(show_factors(f) for f in params) if params else "0",
            show_factors(c.macs) if c.macs else "0"]


def total_lines(report: SymbolicReport, values: Dict[str, int], names: Dict[str, str]) -> List[str]:
    """``params = as written = expanded = factored [= value]`` for weights, biases, params, MACs;
    ``names`` gives the (translated) word for each."""
    lines = []
    for what in ("weights", "biases", "params", "macs"):
        line = f"{names[what]} = " + " = ".join(forms(report, what))
        if values:
            value = evaluate(report.total(what), values)
            line += f" = {show(value)}" if not is_symbolic(value) else f" = {show(sympy().expand(value))}"
        lines.append(line)
    return lines


def to_dict(report: SymbolicReport, values: Dict[str, int]) -> dict:
    """The JSON form: expressions in sympy's own syntax (``25*k1*k2 + 10*k1 + k2``), which
    ``sympy.sympify`` reads back; values (``--set``) bound where given."""
    s = sympy()

    def text(expr):
        return s.sstr(evaluate(expr, values)) if values else s.sstr(expr)

    def product(factors):
        return text(s.Mul(*factors)) if factors else "0"

    out = {"symbols": report.symbols(), "values": dict(values),
           "input": [text(v) for v in report.input], "output": [text(v) for v in report.output]}
    for what in ("weights", "biases", "params", "macs"):
        out[f"total_{what}"] = text(s.expand(report.total(what)))
        out[f"{what}_factored"] = s.sstr(s.factor(report.total(what)))
    out["layers"] = [{"name": r.name, "type": r.type, "label": r.label,
                      "output_shape": [text(v) for v in r.counts.output_shape],
                      "weights": product(r.counts.weights), "biases": product(r.counts.biases),
                      "params": text(s.Mul(*r.counts.weights) if r.counts.weights else 0)
                      if not r.counts.biases else text(s.Mul(*(r.counts.weights or (0,))) + s.Mul(*r.counts.biases)),
                      "macs": product(r.counts.macs)} for r in report.rows]
    return out
