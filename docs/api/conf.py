"""Sphinx configuration of fusedrnn's API reference, built from the package's docstrings.

Build (the package must be importable: installed, or on the path of the Python that runs Sphinx)::

    python -m pip install -r docs/requirements.txt
    python -m sphinx -W --keep-going -b html docs/api build/docs

The pages document the public names (each module's ``__all__``); a build whose pages leave one of them
out fails (``check_public_api_documented`` below), as does any other warning under ``-W``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import fusedrnn

project = "fusedrnn"
author = "fusedrnn developers"
copyright = "fusedrnn developers"
release = fusedrnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",  # the pages load MathJax from its usual address when read; the build is offline
]

exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"fusedrnn {release} API reference"
html_static_path: list[str] = []
pygments_style = "sphinx"

# Docstrings are numpydoc-style; "Shapes" is fusedrnn's section for the arrays a class takes and returns.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = False  # "Attributes" as attribute entries, under the class
napoleon_use_rtype = False
napoleon_custom_sections = ["Shapes"]
# Types named in docstrings link to fusedrnn's classes (not to fusedrnn.torch's namesakes).
napoleon_preprocess_types = True
napoleon_type_aliases = {
    name: f"~fusedrnn.{name}"
    for name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Tape", "Gradients")
}
napoleon_type_aliases.update(
    {
        "GradientFlow": "~fusedrnn.analysis.GradientFlow",
        "ForwardCache": "~fusedrnn.reference.ForwardCache",
        "StepRecord": "~fusedrnn.reference.StepRecord",
    }
)

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings say what each argument is, with its shape
autodoc_preserve_defaults = True  # dtype=np.float32 as written, not <class 'numpy.float32'>
autodoc_inherit_docstrings = False  # a member without a docstring of its own shows as one
autosummary_generate = False  # the pages are written by hand; autosummary only makes the tables

# fusedrnn.torch imports PyTorch: documented when PyTorch is installed (as in CI); without it, its page
# says so instead (see replace_torch_page), so that the build still passes.
HAS_TORCH = importlib.util.find_spec("torch") is not None

# The public API: what each of these modules lists in __all__ (modules among them are pages of their own).
PUBLIC_MODULES = [
    "fusedrnn",
    "fusedrnn.stream",
    "fusedrnn.optim",
    "fusedrnn.interop",
    "fusedrnn.reference",
    "fusedrnn.analysis",
] + (["fusedrnn.torch"] if HAS_TORCH else [])


def public_objects() -> dict[int, list[str]]:
    """Each public class, function and constant (by id) -> the paths that reach it, e.g.
    ``fusedrnn.from_torch`` and ``fusedrnn.interop.from_torch``; each module -> its own name."""
    out: dict[int, list[str]] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        out.setdefault(id(module), []).append(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if type(obj).__name__ == "module" or name.startswith("__"):
                continue  # modules are listed by name; __version__ is release above
            out.setdefault(id(obj), []).append(f"{module_name}.{name}")
    return out


def check_public_api_documented(app: Any, env: Any) -> None:
    """Warn (an error under -W) for every public object that no page documents under any of its paths."""
    from sphinx.util import logging

    documented = set(env.get_domain("py").objects)
    for paths in public_objects().values():
        if not documented.intersection(paths):
            logging.getLogger(__name__).warning("the API reference does not document %s", " or ".join(paths))


def replace_torch_page(app: Any, docname: str, source: list[str]) -> None:
    """Without PyTorch, the page of fusedrnn.torch says it was left out rather than failing to import."""
    if docname == "torch" and not HAS_TORCH:
        title = source[0].splitlines()[0]
        source[0] = (
            f"{title}\n{'=' * len(title)}\n\n"
            "``fusedrnn.torch`` needs PyTorch, which the Python that built this reference did not have: "
            "install torch and build again to document it.\n"
        )


def setup(app: Any) -> None:
    app.connect("source-read", replace_torch_page)
    app.connect("env-check-consistency", check_public_api_documented)
