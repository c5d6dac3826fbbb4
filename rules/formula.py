"""Custom metric formulas: a tiny arithmetic language over the metric columns, compiled to a Polars expression.

A formula is read by its own tokenizer and recursive-descent parser into frozen dataclasses; nothing of Python
is ever reached from it (no names, attributes, strings, imports or code objects: only what the grammar lists).

Grammar (lowest precedence first; ``{x}`` is zero or more x, ``[x]`` an optional x)::

    formula     = logic END
    logic       = conjunction {"or" conjunction}
    conjunction = negation {"and" negation}
    negation    = "not" negation | comparison
    comparison  = sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum]       (no chains: a < b < c is refused)
    sum         = product {("+" | "-") product}
    product     = signed {("*" | "/") signed}
    signed      = "-" signed | atom
    atom        = NUMBER | "null" | VARIABLE | "(" logic ")"
                | ("min" | "max") "(" logic "," logic {"," logic} ")"       (two or more arguments)
                | "abs" "(" logic ")"
                | "if" "(" logic "," logic "," logic ")"                   (condition, then, else)
    NUMBER      = digits ["." digits] [("e" | "E") ["+" | "-"] digits]  |  "." digits [...]
    VARIABLE    = a name of the allowed set: [A-Za-z_][A-Za-z0-9_]*, ASCII only, case-sensitive

Kinds: arithmetic, comparisons, min, max and abs take numbers; and, or, not and an ``if``'s condition take
conditions (a comparison or a logic of them); both branches of an ``if`` are of one kind; ``null`` fits either.
The whole formula must give a number. Limits: at most ``MAX_TOKENS`` tokens and ``MAX_NESTING`` levels of
parentheses, calls and signs.

Values (Polars): variables are read as Float64. Null propagates: any arithmetic, comparison, min, max or abs
with a null operand is null; ``and``/``or``/``not`` follow three-valued logic (``null and false`` is false,
``null or true`` is true); an ``if`` whose condition is null is null. Division by zero is null, and a result
that is not a finite number (inf, NaN) is null: a custom metric that cannot be computed is *not measured*.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Literal

import polars as pl

from suppliers.errors import RuleSetError

__all__ = [
    "FormulaError", "Node", "Number", "Null", "Variable", "Unary", "Binary", "Call", "Conditional",
    "tokenize", "parse", "variables", "to_expression", "compile_formula", "KEYWORDS", "FUNCTIONS",
]

MAX_TOKENS = 200
MAX_NESTING = 32
FUNCTIONS = ("min", "max", "abs", "if")
KEYWORDS = ("and", "or", "not", "null", *FUNCTIONS)
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")

_WHITESPACE = " \t\r\n"
_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_TWO_CHAR_OPERATORS = ("<=", ">=", "==", "!=")
_ONE_CHAR_OPERATORS = "<>+-*/(),"
_QUOTES_FIX = "A formula has numbers and metric names only."
_GROUPING_FIX = "Group with parentheses."
_OPERATORS_FIX = "The operators are + - * /, the comparisons < <= > >= == !=, and the logic and, or, not."
_REFUSED_CHARACTERS: dict[str, tuple[str, str | None]] = {  # character: (problem, fix)
    '"': ("text in quotes is not allowed", _QUOTES_FIX),
    "'": ("text in quotes is not allowed", _QUOTES_FIX),
    ".": ("'.' is not allowed (attribute access)", "A decimal number needs digits on both sides of its point."),
    "[": ("'[' is not allowed (lists and subscripts)", _GROUPING_FIX),
    "]": ("']' is not allowed (lists and subscripts)", _GROUPING_FIX),
    "{": ("'{' is not allowed", _GROUPING_FIX),
    "}": ("'}' is not allowed", _GROUPING_FIX),
    "=": ("'=' is not allowed", "Compare with '=='."),
    ":": ("':' is not allowed", None),
    "!": ("'!' is not allowed", "Write 'not', or '!=' to compare."),
    "&": ("'&' is not allowed", "Write 'and'."),
    "|": ("'|' is not allowed", "Write 'or'."),
    "~": ("'~' is not allowed", "Write 'not'."),
    "%": ("'%' is not allowed", _OPERATORS_FIX),
    "^": ("'^' is not allowed", _OPERATORS_FIX),
    "#": ("'#' is not allowed (no comments inside a formula)", None),
}

TokenKind = Literal["number", "name", "operator", "end", "refused"]
Kind = Literal["number", "condition", "null"]


class FormulaError(RuleSetError):
    """A formula that does not parse or check; ``column`` is the 1-based column of the offending token.

    ``what`` is one line (the problem and its column); ``str()`` adds the formula and a caret line under it.
    """

    formula = ""  # class defaults: an unpickled error is printed before its attributes are restored
    column = 1

    def __init__(self, problem: str, *, formula: str, column: int, note: str = "", fix: str | None = None) -> None:
        self.problem = problem
        self.formula = formula
        self.column = column
        super().__init__(f"{problem} at column {column}{note}", fix=fix)

    @property
    def one_line(self) -> str:
        """What went wrong and how to fix it, without the caret lines."""
        return super().__str__()

    @property
    def pointer(self) -> str:
        """The formula (whitespace as spaces) and a caret under the offending column."""
        shown = "".join(char if char.isprintable() else " " for char in self.formula)
        return f"  {shown}\n  {' ' * (self.column - 1)}^"

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.pointer}"


# --- tokens ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    column: int  # 1-based
    problem: str = ""  # why a refused token is refused
    fix: str | None = None  # and how to write it instead


def tokenize(text: str) -> tuple[Token, ...]:
    """Every token of ``text`` and an end token; the first character no token may hold becomes a refused token
    (and ends the list), so that the parser reports the first problem in reading order."""
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        if text[index] in _WHITESPACE:
            index += 1
            continue
        token = _read_token(text, index)
        tokens.append(token)
        if token.kind == "refused":
            break
        index += len(token.text)
    tokens.append(Token("end", "", len(text) + 1))
    return tuple(tokens)


def _read_token(text: str, index: int) -> Token:
    char, column = text[index], index + 1
    if char in _DIGITS or (char == "." and text[index + 1:index + 2] in tuple(_DIGITS)):
        return _read_number(text, index)
    if char in _LETTERS:
        end = _scan(text, index, _LETTERS + _DIGITS)
        return Token("name", text[index:end], column)
    if text[index:index + 2] in _TWO_CHAR_OPERATORS:
        return Token("operator", text[index:index + 2], column)
    if char in _ONE_CHAR_OPERATORS:
        return Token("operator", char, column)
    problem, fix = _REFUSED_CHARACTERS.get(char, (f"unexpected character {char!r}", None))
    return Token("refused", char, column, problem, fix)


def _read_number(text: str, index: int) -> Token:
    end = _scan(text, index, _DIGITS)
    if text[end:end + 1] == "." and text[end + 1:end + 2] in tuple(_DIGITS):
        end = _scan(text, end + 1, _DIGITS)
    if text[end:end + 1] in ("e", "E"):
        digits_at = end + 2 if text[end + 1:end + 2] in ("+", "-") else end + 1
        if text[digits_at:digits_at + 1] in tuple(_DIGITS):
            end = _scan(text, digits_at, _DIGITS)
    if text[end:end + 1] and text[end] in _LETTERS + _DIGITS + ".":
        bad_end = _scan(text, end, _LETTERS + _DIGITS + ".")
        return Token("refused", text[index:bad_end], index + 1, f"malformed number {text[index:bad_end]!r}",
                     "Write numbers like 12, 0.5 or 1e6.")
    if not math.isfinite(float(text[index:end])):
        return Token("refused", text[index:end], index + 1, f"number {text[index:end]} is too large",
                     "Write a number below 1e308.")
    return Token("number", text[index:end], index + 1)


def _scan(text: str, index: int, allowed: str) -> int:
    while index < len(text) and text[index] in allowed:
        index += 1
    return index


# --- parse tree -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    column: int


@dataclass(frozen=True)
class Null:
    column: int


@dataclass(frozen=True)
class Variable:
    name: str
    column: int


@dataclass(frozen=True)
class Unary:
    operator: Literal["-", "not"]
    operand: Node
    column: int


@dataclass(frozen=True)
class Binary:
    operator: str  # + - * / < <= > >= == != and or
    left: Node
    right: Node
    column: int  # of the operator


@dataclass(frozen=True)
class Call:
    function: Literal["min", "max", "abs"]
    arguments: tuple[Node, ...]
    column: int  # of the function's name


@dataclass(frozen=True)
class Conditional:
    condition: Node
    then: Node
    otherwise: Node
    column: int  # of the 'if'


Node = Number | Null | Variable | Unary | Binary | Call | Conditional


def parse(text: str, allowed: Collection[str] | None = None) -> Node:
    """The checked parse tree of ``text``; ``allowed`` are the variable names it may use (None: any name).

    Raise FormulaError at the first problem in reading order, then at the first mix of kinds.
    """
    tokens = tokenize(text)
    if len(tokens) - 1 > MAX_TOKENS:
        raise FormulaError(f"the formula is too long ({len(tokens) - 1} tokens, at most {MAX_TOKENS})",
                           formula=text, column=tokens[MAX_TOKENS].column,
                           fix="Split it into several custom metrics, each using the ones above it.")
    tree = _Parser(text, tokens, None if allowed is None else frozenset(allowed)).formula()
    kind = _kind_of(tree, text)
    if kind == "condition":
        raise FormulaError("the formula gives a condition (true/false), not a number", formula=text,
                           column=tree.column, fix="Turn it into a number with if(condition, 1, 0).")
    return tree


class _Parser:
    """Recursive descent over the token list, one method per grammar rule (see the module docstring)."""

    def __init__(self, text: str, tokens: tuple[Token, ...], allowed: frozenset[str] | None) -> None:
        self.text = text
        self.tokens = tokens
        self.allowed = allowed
        self.index = 0
        self.nesting = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def _is(self, kind: TokenKind, *texts: str) -> bool:
        return self.current.kind == kind and (not texts or self.current.text in texts)

    def _fail(self, problem: str, token: Token, *, note: str = "", fix: str | None = None) -> FormulaError:
        return FormulaError(problem, formula=self.text, column=token.column, note=note, fix=fix)

    def _unexpected(self, expected: str) -> FormulaError:
        token = self.current
        if token.kind == "refused":
            return self._fail(token.problem, token, fix=token.fix)
        return self._fail(f"expected {expected}, found {_describe(token)}", token)

    def _enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self._fail(f"nested too deeply (more than {MAX_NESTING} levels)", token,
                             fix="Split it into several custom metrics, each using the ones above it.")

    def formula(self) -> Node:
        tree = self._logic()
        if not self._is("end"):
            if self._is("name", "if"):
                raise self._fail("unexpected 'if'", self.current,
                                 fix="The conditional is written if(condition, then, else).")
            raise self._unexpected("an operator or the end of the formula")
        return tree

    def _logic(self) -> Node:
        node = self._conjunction()
        while self._is("name", "or"):
            operator = self._advance()
            node = Binary("or", node, self._conjunction(), operator.column)
        return node

    def _conjunction(self) -> Node:
        node = self._negation()
        while self._is("name", "and"):
            operator = self._advance()
            node = Binary("and", node, self._negation(), operator.column)
        return node

    def _negation(self) -> Node:
        if not self._is("name", "not"):
            return self._comparison()
        operator = self._advance()
        self._enter(operator)
        node = Unary("not", self._negation(), operator.column)
        self.nesting -= 1
        return node

    def _comparison(self) -> Node:
        node = self._sum()
        if self._is("operator", *COMPARISONS):
            operator = self._advance()
            node = Binary(operator.text, node, self._sum(), operator.column)
            if self._is("operator", *COMPARISONS):
                raise self._fail("comparisons cannot be chained", self.current,
                                 fix="Join two comparisons with 'and', e.g. a < b and b < c.")
        return node

    def _sum(self) -> Node:
        node = self._product()
        while self._is("operator", "+", "-"):
            operator = self._advance()
            node = Binary(operator.text, node, self._product(), operator.column)
        return node

    def _product(self) -> Node:
        node = self._signed()
        while self._is("operator", "*", "/"):
            operator = self._advance()
            node = Binary(operator.text, node, self._signed(), operator.column)
        return node

    def _signed(self) -> Node:
        if not self._is("operator", "-"):
            return self._atom()
        operator = self._advance()
        self._enter(operator)
        node = Unary("-", self._signed(), operator.column)
        self.nesting -= 1
        return node

    def _atom(self) -> Node:
        token = self.current
        if token.kind == "number":
            self._advance()
            return Number(float(token.text), token.column)
        if self._is("operator", "("):
            self._advance()
            self._enter(token)
            node = self._logic()
            self._close(token)
            self.nesting -= 1
            return node
        if token.kind == "name":
            return self._named(token)
        raise self._unexpected("a number, a metric name, '(' or a function")

    def _named(self, token: Token) -> Node:
        name = token.text
        if name == "null":
            self._advance()
            return Null(token.column)
        if name in FUNCTIONS:
            return self._call(token)
        if name in ("and", "or", "not"):
            raise self._unexpected("a number, a metric name, '(' or a function")
        if self.tokens[self.index + 1].text == "(" and self.tokens[self.index + 1].kind == "operator":
            raise self._fail(f"unknown function {name!r}", token, fix=f"The functions are {_listed(FUNCTIONS)}.")
        if self.allowed is not None and name not in self.allowed:
            raise self._unknown_name(token)
        self._advance()
        return Variable(name, token.column)

    def _unknown_name(self, token: Token) -> FormulaError:
        assert self.allowed is not None
        candidates = {candidate.lower(): candidate for candidate in (*sorted(self.allowed), *KEYWORDS)}
        close = difflib.get_close_matches(token.text.lower(), list(candidates), n=1, cutoff=0.75)
        if close:
            return self._fail(f"unknown name {token.text!r}", token, note=f" (did you mean {candidates[close[0]]!r}?)")
        known = ", ".join(sorted(self.allowed)) or "none"
        return self._fail(f"unknown name {token.text!r}", token, note=f"; known names: {known}")

    def _call(self, name: Token) -> Node:
        self._advance()
        if not self._is("operator", "("):
            raise self._fail(f"{name.text!r} is a function", name,
                             fix=f"Write it with its arguments in parentheses, e.g. {_example(name.text)}.")
        opening = self._advance()
        self._enter(opening)
        arguments: list[Node] = []
        if not self._is("operator", ")"):
            arguments.append(self._logic())
            while self._is("operator", ","):
                self._advance()
                arguments.append(self._logic())
        self._close(opening)
        self.nesting -= 1
        return self._checked_call(name, tuple(arguments))

    def _close(self, opening: Token) -> None:
        if not self._is("operator", ")"):
            raise self._unexpected(f"')' to close the '(' at column {opening.column}")
        self._advance()

    def _checked_call(self, name: Token, arguments: tuple[Node, ...]) -> Node:
        count = len(arguments)
        got = f"got {count}"
        if name.text == "if":
            if count != 3:
                raise self._fail(f"if takes 3 arguments (condition, then, else), {got}", name,
                                 fix=f"Write {_example('if')}.")
            return Conditional(*arguments, name.column)
        if name.text == "abs":
            if count != 1:
                raise self._fail(f"abs takes 1 argument, {got}", name, fix=f"Write {_example('abs')}.")
            return Call("abs", arguments, name.column)
        if count < 2:
            raise self._fail(f"{name.text} takes 2 or more arguments, {got}", name,
                             fix=f"Write {_example(name.text)}.")
        return Call("min" if name.text == "min" else "max", arguments, name.column)


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the formula"
    if token.kind == "number":
        return f"the number {token.text}"
    return repr(token.text)


def _listed(names: Collection[str]) -> str:
    *first, last = names
    return f"{', '.join(first)} and {last}" if first else last


def _example(function: str) -> str:
    return {"min": "min(on_time_rate, otif_rate)", "max": "max(on_time_rate, otif_rate)",
            "abs": "abs(mean_days_late - 5)", "if": "if(order_lines >= 10, on_time_rate, null)"}[function]


# --- kinds ----------------------------------------------------------------------------------------------------


def _kind_of(node: Node, text: str) -> Kind:
    """The kind of value ``node`` gives; a FormulaError where a number meets a condition."""
    match node:
        case Number() | Variable():
            return "number"
        case Null():
            return "null"
        case Unary(operator="-", operand=operand):
            _require(operand, "number", f"'-' needs a number, but {_what(operand)} is a condition", text)
            return "number"
        case Unary(operand=operand):
            _require(operand, "condition", f"'not' needs a condition, but {_what(operand)} is a number", text)
            return "condition"
        case Binary(operator=operator, left=left, right=right) if operator in ("and", "or"):
            for side in (left, right):
                _require(side, "condition", f"'{operator}' needs conditions on both sides, but {_what(side)} "
                         "is a number", text)
            return "condition"
        case Binary(operator=operator, left=left, right=right):
            for side in (left, right):
                _require(side, "number", f"'{operator}' needs numbers on both sides, but {_what(side)} is a "
                         "condition", text)
            return "condition" if operator in COMPARISONS else "number"
        case Call(function=function, arguments=arguments):
            for argument in arguments:
                _require(argument, "number", f"{function} needs numbers, but {_what(argument)} is a condition",
                         text)
            return "number"
        case Conditional(condition=condition, then=then, otherwise=otherwise, column=column):
            _require(condition, "condition", f"the condition of if is a number ({_what(condition)})", text)
            kinds = {_kind_of(then, text), _kind_of(otherwise, text)} - {"null"}
            if len(kinds) > 1:
                raise FormulaError("the two branches of if give different kinds (a number and a condition)",
                                   formula=text, column=column, fix="Make both branches numbers.")
            return kinds.pop() if kinds else "null"
    raise AssertionError(f"not a formula node: {node!r}")  # pragma: no cover


def _require(node: Node, wanted: Kind, problem: str, text: str) -> None:
    if _kind_of(node, text) not in (wanted, "null"):
        fix = ("Compare it, e.g. on_time_rate >= 0.9." if wanted == "condition"
               else "Turn the condition into a number with if(condition, 1, 0).")
        raise FormulaError(problem, formula=text, column=node.column, fix=fix)


def _what(node: Node) -> str:
    match node:
        case Variable(name=name):
            return repr(name)
        case Number(value=value):
            return f"the number {value:g}"
        case Unary(operator=operator) | Binary(operator=operator):
            return f"the '{operator}' part"
        case Call(function=function):
            return f"{function}(...)"
        case Conditional():
            return "if(...)"
    return "null"  # pragma: no cover - null fits every kind


# --- names and compilation ------------------------------------------------------------------------------------


def _walk(node: Node) -> Iterator[Node]:
    yield node
    match node:
        case Unary(operand=operand):
            yield from _walk(operand)
        case Binary(left=left, right=right):
            yield from _walk(left)
            yield from _walk(right)
        case Call(arguments=arguments):
            for argument in arguments:
                yield from _walk(argument)
        case Conditional(condition=condition, then=then, otherwise=otherwise):
            for part in (condition, then, otherwise):
                yield from _walk(part)


def variables(formula: str | Node) -> tuple[str, ...]:
    """The variable names a formula uses, in order of first use (a text is parsed with any name allowed)."""
    tree = parse(formula) if isinstance(formula, str) else formula
    return tuple(dict.fromkeys(node.name for node in _walk(tree) if isinstance(node, Variable)))


def to_expression(tree: Node) -> pl.Expr:
    """A checked parse tree as a Float64 Polars expression; not a finite number (inf, NaN) becomes null."""
    value = _compile_node(tree, boolean=False).cast(pl.Float64)
    return pl.when(value.is_finite()).then(value)


def compile_formula(text: str, allowed: Collection[str]) -> pl.Expr:
    """Parse ``text`` over the variable names ``allowed`` and compile it (FormulaError if it does not check)."""
    return to_expression(parse(text, allowed))


def _null(boolean: bool) -> pl.Expr:
    return pl.lit(None, dtype=pl.Boolean if boolean else pl.Float64)


def _compile_node(node: Node, *, boolean: bool) -> pl.Expr:
    """``boolean`` says whether the node stands where a condition is wanted (it types a null)."""
    match node:
        case Number(value=value):
            return pl.lit(value, dtype=pl.Float64)
        case Null():
            return _null(boolean)
        case Variable(name=name):
            return pl.col(name).cast(pl.Float64)
        case Unary(operator="-", operand=operand):
            return -_compile_node(operand, boolean=False)
        case Unary(operand=operand):
            return ~_compile_node(operand, boolean=True)
        case Binary(operator=operator, left=left, right=right):
            logic = operator in ("and", "or")
            return _binary(operator, _compile_node(left, boolean=logic), _compile_node(right, boolean=logic))
        case Call(function="abs", arguments=(argument,)):
            return _compile_node(argument, boolean=False).abs()
        case Call(function=function, arguments=arguments):
            return _extreme(function, [_compile_node(argument, boolean=False) for argument in arguments])
        case Conditional(condition=condition, then=then, otherwise=otherwise):
            test = _compile_node(condition, boolean=True)
            return (pl.when(test.is_null()).then(_null(boolean)).when(test)
                    .then(_compile_node(then, boolean=boolean)).otherwise(_compile_node(otherwise, boolean=boolean)))
    raise AssertionError(f"not a formula node: {node!r}")  # pragma: no cover


def _binary(operator: str, left: pl.Expr, right: pl.Expr) -> pl.Expr:
    """One binary operator over two expressions; division by zero is null."""
    match operator:
        case "+":
            return left + right
        case "-":
            return left - right
        case "*":
            return left * right
        case "/":
            return pl.when(right != 0).then(left / right)
        case "<":
            return left < right
        case "<=":
            return left <= right
        case ">":
            return left > right
        case ">=":
            return left >= right
        case "==":
            return left == right
        case "!=":
            return left != right
        case "and":
            return left & right
        case "or":
            return left | right
    raise AssertionError(f"not an operator: {operator!r}")  # pragma: no cover


def _extreme(function: str, arguments: list[pl.Expr]) -> pl.Expr:
    """min or max of two or more values; null when any of them is null (an unmeasured input is not skipped)."""
    extreme = pl.min_horizontal(arguments) if function == "min" else pl.max_horizontal(arguments)
    any_null = pl.any_horizontal(argument.is_null() for argument in arguments)
    return pl.when(any_null).then(_null(False)).otherwise(extreme)
