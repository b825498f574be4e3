"""The public API documents itself: every public module, class, function, method and property has a
docstring of its own (not one Python generated), names every parameter it takes, and each recurrent class
states its equations, the options that change them, and its shapes. The API reference (docs/api) is built
from these docstrings.

The public API is what ``__all__`` lists in ``PUBLIC_MODULES`` (and in ``fusedrnn.torch`` when PyTorch is
installed), and, for each class there, every attribute whose name has no leading underscore (plus
``__call__``) that fusedrnn defines on the class or on one of its fusedrnn base classes.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import re
import types
from typing import Any, NamedTuple

import pytest

PUBLIC_MODULES = (
    "fusedrnn",
    "fusedrnn.stream",
    "fusedrnn.optim",
    "fusedrnn.interop",
    "fusedrnn.reference",
    "fusedrnn.analysis",
)
TORCH_MODULE = "fusedrnn.torch"
HAS_TORCH = importlib.util.find_spec("torch") is not None

# Known gaps in fusedrnn/torch.py, each checked as a strict xfail: documenting one makes its test pass
# unexpectedly, which fails until the name is taken off this list. Empty it to require them all.
TORCH_DOCSTRING_GAPS = frozenset()
# The same for the parameter check and the equations check.
TORCH_PARAMETER_GAPS = frozenset()
TORCH_EQUATION_GAPS = frozenset()

# What Python writes when a class or field has no docstring of its own.
_GENERATED_DOCS = (
    re.compile(r"Alias for field number \d+"),  # a NamedTuple's fields
    re.compile(r"\w+\(.*\)"),  # a NamedTuple's or a dataclass's signature, on one line
)


class Documented(NamedTuple):
    path: str  # where a user reaches it: "fusedrnn.LSTM.record"
    obj: Any  # the module, class, function or descriptor
    doc: str | None  # its own docstring, not one inherited from a base class
    kind: str  # "module", "class", "function" or "member"


def _is_fusedrnn(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "fusedrnn"


def _is_member(attr: Any) -> bool:
    """A method, property or field (not a plain value: a constant or a class attribute)."""
    if isinstance(attr, (property, classmethod, staticmethod, types.FunctionType)):
        return True
    # compiled methods and properties (pybind11), NamedTuple fields, slots
    return not isinstance(attr, type) and (callable(attr) or hasattr(attr, "__get__"))


def _class_members(path: str, cls: type) -> list[Documented]:
    """The public members fusedrnn defines on ``cls`` or its fusedrnn bases, each as it resolves on cls."""
    seen: set[str] = set()
    out = []
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            public = not name.startswith("_") or name == "__call__"
            if public and _is_fusedrnn(klass) and _is_member(attr):
                doc = attr.__doc__
                slots = vars(klass).get("__slots__")
                if isinstance(slots, dict) and name in slots:
                    doc = slots[name]  # a slot's docstring (what help() and Sphinx show)
                out.append(Documented(f"{path}.{name}", attr, doc, "member"))
    return out


def public_api() -> list[Documented]:
    """Every public module, class, function and member, each once (at the first path that reaches it)."""
    names = list(PUBLIC_MODULES) + ([TORCH_MODULE] if HAS_TORCH else [])
    seen: set[int] = set()
    out: list[Documented] = []
    for module_name in names:
        module = importlib.import_module(module_name)
        out.append(Documented(module_name, module, module.__doc__, "module"))
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or isinstance(obj, types.ModuleType):
                continue  # modules are walked by name above
            seen.add(id(obj))
            path = f"{module_name}.{name}"
            if isinstance(obj, type):
                out.append(Documented(path, obj, obj.__dict__.get("__doc__"), "class"))
                out.extend(_class_members(path, obj))
            elif callable(obj):
                out.append(Documented(path, obj, obj.__doc__, "function"))
            # constants (__version__, FORMAT_VERSION, COMPARISON) cannot carry a docstring
    return out


def _gap_marks(path: str, gaps: frozenset[str]) -> list[Any]:
    if path in gaps:
        return [pytest.mark.xfail(reason="known gap in fusedrnn/torch.py, listed in this file", strict=True)]
    return []


API = public_api()


def _params(items: list[Documented], gaps: frozenset[str]) -> list[Any]:
    return [pytest.param(item, id=item.path, marks=_gap_marks(item.path, gaps)) for item in items]


# -- every public name has a docstring -----------------------------------------------------------------


def test_the_walk_reaches_the_api():
    """The walk itself: it must see the classes, members and functions named in the API contract, so that
    the tests below cannot pass by finding nothing."""
    paths = {item.path for item in API}
    expected = {
        "fusedrnn.LSTM",
        "fusedrnn.LSTM.__call__",
        "fusedrnn.LSTM.record",
        "fusedrnn.LSTM.stream",
        "fusedrnn.LSTM.state_dict",
        "fusedrnn.LSTM.dtype",
        "fusedrnn.GRU.linear_before_reset",
        "fusedrnn.LSTMCell.__call__",
        "fusedrnn.Tape.backward",
        "fusedrnn.IncompatibleKeys.missing_keys",
        "fusedrnn.stream.Stream.step",
        "fusedrnn.stream.Stream.reset",
        "fusedrnn.optim.Adam.step",
        "fusedrnn.optim.clip_grad_norm",
        "fusedrnn.interop.Reverse.record",
        "fusedrnn.interop.ModelFileError",
        "fusedrnn.reference.forward",
        "fusedrnn.analysis.gradient_flow",
        "fusedrnn.set_num_threads",
    }
    assert expected <= paths, f"not reached: {sorted(expected - paths)}"
    if HAS_TORCH:
        assert {"fusedrnn.torch.LSTM", "fusedrnn.torch.LSTM.mark_weights_changed"} <= paths


def _missing_docstring(doc: str | None) -> str | None:
    """Why ``doc`` does not count as a docstring, or None when it does."""
    if doc is None or not doc.strip():
        return "has no docstring"
    text = doc.strip()
    if any(pattern.fullmatch(text) for pattern in _GENERATED_DOCS):
        return f"has only the docstring Python generated: {text!r}"
    return None


@pytest.mark.parametrize("item", _params(API, TORCH_DOCSTRING_GAPS))
def test_has_docstring(item: Documented):
    problem = _missing_docstring(item.doc)
    assert problem is None, f"{item.path} ({item.kind}) {problem}"


def test_generated_docstrings_are_caught():
    """The check above refuses what Python writes for undocumented NamedTuples and dataclasses."""
    from dataclasses import dataclass

    class Pair(NamedTuple):
        left: int
        right: int

    @dataclass
    class Point:
        x: float

    assert _missing_docstring(Pair.__doc__) is not None
    assert _missing_docstring(Pair.left.__doc__) is not None
    assert _missing_docstring(Point.__doc__) is not None
    assert _missing_docstring("  \n ") is not None
    assert _missing_docstring("Sum of squares ``a^2 + b^2``.") is None


# -- every parameter is named in the docstring -----------------------------------------------------------


def _signature_target(item: Documented) -> Any:
    """The callable whose parameters the docstring must name: a class's __init__ (documented on the class,
    numpydoc style), a function, a method; None for properties and fields."""
    if item.kind == "class":
        init = item.obj.__dict__.get("__init__")
        return init if isinstance(init, types.FunctionType) else None
    obj = item.obj
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    return obj if isinstance(obj, types.FunctionType) else None


def undocumented_parameters(func: Any, doc: str) -> list[str]:
    """The named parameters of ``func`` (not self, not *args or **kwargs) that ``doc`` never mentions."""
    names = []
    for p in inspect.signature(func).parameters.values():
        if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not re.search(rf"(?<![\w.]){re.escape(p.name)}(?!\w)", doc):
            names.append(p.name)
    return names


SIGNED = [item for item in API if item.doc and _signature_target(item) is not None]


@pytest.mark.parametrize("item", _params(SIGNED, TORCH_PARAMETER_GAPS))
def test_docstring_names_every_parameter(item: Documented):
    missing = undocumented_parameters(_signature_target(item), item.doc or "")
    assert not missing, f"{item.path}: the docstring does not mention parameter(s) {', '.join(missing)}"


def test_parameter_check_sees_a_missing_name():
    def scale(values, factor, *, clip_at=None):
        """Multiply ``values`` by ``factor``."""

    assert undocumented_parameters(scale, scale.__doc__) == ["clip_at"]


# -- each recurrent class states its equations, options and shapes --------------------------------------


class Equations(NamedTuple):
    left_sides: tuple[str, ...]  # the quantities the math defines: "i_t" is found as "i_t =" in it
    options: tuple[str, ...]  # constructor options that change the equations, each named in the text
    option_math: tuple[str, ...]  # what those options put in the math (LaTeX fragments)


_LSTM_MATH = (r"p_i", r"p_f", r"p_o", r"\operatorname{clip}", r"1 - i", r"W_{hr}", r"\hat\sigma")
_GRU_MATH = (r"r_t \odot (W_{hn}", r"W_{hn} (r_t \odot", r"\hat\sigma", r"\operatorname{clip}")
_CLIP = r"\operatorname{clip}"
RECURRENT = {
    "fusedrnn.RNN": Equations(
        ("h_t",), ("nonlinearity", "residual", "dropout", "clip"), (r"\tanh", r"\max", _CLIP)
    ),
    "fusedrnn.LSTM": Equations(
        ("i_t", "f_t", "g_t", "o_t", "c_t", "h_t"),
        ("peephole", "clip", "input_forget", "gate_activation", "proj_size", "residual", "forget_bias"),
        _LSTM_MATH,
    ),
    "fusedrnn.GRU": Equations(
        ("r_t", "z_t", "n_t", "h_t"),
        ("linear_before_reset", "gate_activation", "residual", "clip"),
        _GRU_MATH,
    ),
    "fusedrnn.RNNCell": Equations(("h'",), ("nonlinearity", "clip"), (r"\tanh", r"\max", _CLIP)),
    "fusedrnn.LSTMCell": Equations(("i", "f", "g", "o", "c'", "h'"), ("clip",), (_CLIP,)),
    "fusedrnn.GRUCell": Equations(
        ("r", "z", "n", "h'"),
        ("linear_before_reset", "clip"),
        (r"r \odot (W_{hn}", r"W_{hn} (r \odot", _CLIP),
    ),
}
if HAS_TORCH:
    # torch.nn's modules: PyTorch's equations and options only (projection; tanh or relu).
    RECURRENT.update(
        {
            "fusedrnn.torch.LSTM": Equations(
                RECURRENT["fusedrnn.LSTM"].left_sides, ("proj_size",), (r"W_{hr}",)
            ),
            "fusedrnn.torch.GRU": Equations(
                RECURRENT["fusedrnn.GRU"].left_sides, (), (r"r_t \odot (W_{hn}",)
            ),
            "fusedrnn.torch.RNN": RECURRENT["fusedrnn.RNN"]._replace(
                options=("nonlinearity",), option_math=(r"\tanh", r"\max")
            ),
            "fusedrnn.torch.LSTMCell": RECURRENT["fusedrnn.LSTMCell"]._replace(options=(), option_math=()),
            "fusedrnn.torch.GRUCell": RECURRENT["fusedrnn.GRUCell"]._replace(options=(), option_math=()),
            "fusedrnn.torch.RNNCell": RECURRENT["fusedrnn.RNNCell"]._replace(
                options=("nonlinearity",), option_math=(r"\tanh", r"\max")
            ),
        }
    )


def math_blocks(doc: str) -> str:
    """The text of every ``.. math::`` directive and ``:math:`` role in a docstring, joined."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = re.findall(r":math:`([^`]*)`", doc)
    k = 0
    while k < len(lines):
        if lines[k].strip().startswith(".. math::"):
            indent = len(lines[k]) - len(lines[k].lstrip())
            out.append(lines[k].split("::", 1)[1])
            k += 1
            while k < len(lines) and (
                not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > indent
            ):
                out.append(lines[k])
                k += 1
        else:
            k += 1
    return "\n".join(out)


def sections(doc: str) -> list[str]:
    """The numpydoc section titles of a docstring (a line underlined with dashes)."""
    lines = inspect.cleandoc(doc).splitlines()
    return [
        lines[k].strip()
        for k in range(len(lines) - 1)
        if lines[k].strip() and re.fullmatch(r"-{3,}", lines[k + 1].strip())
    ]


def equation_problems(doc: str, expected: Equations) -> list[str]:
    problems = []
    math = math_blocks(doc)
    if not math.strip():
        return ["no .. math:: block"]
    for lhs in expected.left_sides:
        if not re.search(rf"(?<![\w\\]){re.escape(lhs)}\s*&?=", math):
            problems.append(f"the math does not define {lhs}")
    for fragment in expected.option_math:
        if fragment not in math:
            problems.append(f"the math lacks {fragment!r}")
    for option in expected.options:
        if not re.search(rf"\b{option}\b", doc):
            problems.append(f"option {option} is not mentioned")
    titles = sections(doc)
    for title in ("Parameters", "Shapes"):
        if title not in titles:
            problems.append(f"no {title} section (found {titles})")
    return problems


def _recurrent_params() -> list[Any]:
    by_path = {item.path: item for item in API}
    return [
        pytest.param(by_path[path], RECURRENT[path], id=path, marks=_gap_marks(path, TORCH_EQUATION_GAPS))
        for path in RECURRENT
    ]


@pytest.mark.parametrize("item, expected", _recurrent_params())
def test_recurrent_class_states_equations_and_shapes(item: Documented, expected: Equations):
    problems = equation_problems(item.doc or "", expected)
    assert not problems, f"{item.path}: " + "; ".join(problems)


def test_equation_check_refuses_an_incomplete_docstring():
    doc = """An LSTM.

    .. math::

        i_t = \\sigma(W_{ii} x_t)

    Parameters
    ----------
    peephole : bool
    """
    expected = Equations(("i_t", "f_t"), ("peephole", "clip"), (r"p_i",))
    problems = equation_problems(doc, expected)
    assert "the math does not define f_t" in problems
    assert "the math lacks 'p_i'" in problems
    assert "option clip is not mentioned" in problems
    assert any(p.startswith("no Shapes section") for p in problems)
    assert len(problems) == 4, problems  # i_t, peephole and the Parameters section are there


# -- the examples in the docstrings run and print what they show ------------------------------------------


def example_failures(doc: str, name: str) -> list[str]:
    """Run a docstring's ``>>>`` examples; the report of each one whose output differs (or that raises)."""
    test = doctest.DocTestParser().get_doctest(doc, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    reports: list[str] = []
    runner.run(test, out=reports.append, clear_globs=True)
    return reports


EXAMPLES = [item for item in API if item.doc and ">>>" in item.doc]


@pytest.mark.parametrize("item", _params(EXAMPLES, frozenset()))
def test_docstring_examples_run(item: Documented):
    failures = example_failures(item.doc or "", item.path)
    assert not failures, "".join(failures)


def test_examples_are_found_and_checked():
    assert {"fusedrnn.LSTM", "fusedrnn.GRU", "fusedrnn.RNN"} <= {item.path for item in EXAMPLES}
    wrong = """
    >>> 1 + 1
    3
    """
    assert example_failures(wrong, "wrong")
    assert not example_failures(wrong.replace("3", "2"), "right")


# -- property and field docstrings render as text ------------------------------------------------------------


def reads_as_typed(doc: str) -> bool:
    """Whether the API reference (napoleon) would read the first line of an attribute's docstring as
    ``type: description``: a colon outside literals and roles."""
    first = inspect.cleandoc(doc).splitlines()[0]
    plain = re.sub(r"``[^`]*``|:\w+:`[^`]*`", "", first)
    return re.search(r"(?<!:):(?!:)", plain) is not None


ATTRIBUTES = [item for item in API if item.kind == "member" and not callable(item.obj) and item.doc]


@pytest.mark.parametrize("item", _params(ATTRIBUTES, frozenset()))
def test_attribute_docstring_is_not_read_as_a_type(item: Documented):
    assert not reads_as_typed(item.doc or ""), (
        f"{item.path}: the first line of its docstring has a colon, which the API reference would show as "
        f"a type: {(item.doc or '').strip().splitlines()[0]!r}"
    )


def test_typed_reading_is_detected():
    assert reads_as_typed("The form of the n gate: True or False.")
    assert not reads_as_typed("The number of steps (``a: b`` and :math:`x` are fine).")
    assert ATTRIBUTES and all(item.kind == "member" for item in ATTRIBUTES)
