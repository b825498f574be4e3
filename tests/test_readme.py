"""Every ```python block of the READMEs runs as written, and does what its comments say.

- Which blocks: every fenced block opened by a line ```python in README.md and bench/README.md (bench's
  has none today; any it gets runs too), each named by its README, the ``## `` section above it and its
  place among that section's python blocks.
- How they run: each block as a script would, in a namespace of its own (``__name__ == "__main__"``):
  it imports what it uses, so a reader can copy any one block. The blocks of one section run in order in
  one temporary directory, which the test changes into: a block may read the files an earlier block of
  its section wrote ("Deploy a whole model": the second block loads the first one's model.frnn), so
  running one block first runs the earlier blocks of its section.
- Optional packages: a block needs the modules it imports (``fusedrnn.torch`` imports torch), and onnx
  when it calls ``to_onnx`` or ``from_onnx`` (fusedrnn imports onnx there). When one is missing the block
  is skipped, and so is every later block of its section. Keras runs on PyTorch here (as in CI) unless
  ``KERAS_BACKEND`` says otherwise.
- What is checked beyond running: ``CHECKS`` holds, for some blocks, what their comments promise (shapes,
  the numbers PyTorch gives, the head's gradient); the deploy section's second block runs where torch
  cannot be imported, as its prose says.
- ```sh blocks are not run (they install the package, or rebuild it with sanitizers). The two commands of
  ``## Set up`` are checked to be exactly the ones CI runs (``.ci/run`` relies on them).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import fusedrnn as fr
from closeness import assert_scaled_close
from tolerances import FLOAT32_VS_FINITE_DIFFERENCES, REGROUPED_F32, VS_TORCH

ROOT = Path(__file__).resolve().parents[1]
READMES = (ROOT / "README.md", ROOT / "bench" / "README.md")

SETUP_COMMANDS = ["pip install . && python -m fusedrnn bench", 'pip install ".[test]" && pytest']

# Modules a block needs beyond those it imports: what an imported module imports itself, and what
# fusedrnn imports inside the functions named here.
IMPORTS_ALSO = {"fusedrnn.torch": "torch"}
CALLS_NEED = {"to_onnx": "onnx", "from_onnx": "onnx"}


class Block(NamedTuple):
    readme: str  # its path from the repository's root: "README.md"
    section: str  # the "## " heading above it ("" above the first heading)
    index: int  # its place among the python blocks of its section, from 1
    line: int  # the README line of its first line of code
    code: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.readme, self.section, self.index)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-") or "top"
        return f"{self.readme}:{slug}:{self.index}"


class Fence(NamedTuple):
    language: str  # what follows the opening ```, "" for none
    section: str
    line: int  # the line of its first line of content, from 1
    text: str


def fenced_blocks(markdown: str) -> list[Fence]:
    """Every fenced block of a Markdown text, with the ``## `` section it is in (headings inside fences
    are code, not headings)."""
    fences: list[Fence] = []
    section = ""
    opened: tuple[str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        if opened is None:
            match = re.fullmatch(r"```\s*([\w+-]*)\s*", line)
            if match:
                opened, body = (match[1], number + 1), []
            elif line.startswith("## "):
                section = line[3:].strip()
        elif line.strip() == "```":
            fences.append(Fence(opened[0], section, opened[1], "".join(f"{b}\n" for b in body)))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"a fence opened at line {opened[1] - 1} is never closed"
    return fences


def python_blocks(path: Path) -> list[Block]:
    readme = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    counts: dict[str, int] = {}
    for fence in fenced_blocks(path.read_text(encoding="utf-8")):
        if fence.language == "python":
            counts[fence.section] = counts.get(fence.section, 0) + 1
            blocks.append(Block(readme, fence.section, counts[fence.section], fence.line, fence.text))
    return blocks


BLOCKS = [block for path in READMES if path.exists() for block in python_blocks(path)]


def needed_modules(code: str) -> list[str]:
    """The top-level modules a block needs: those it imports, and those ``IMPORTS_ALSO`` and
    ``CALLS_NEED`` add."""
    needed: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Attribute) and node.attr in CALLS_NEED:
            needed.add(CALLS_NEED[node.attr])
        for name in names:
            needed.add(name.split(".")[0])
            if name in IMPORTS_ALSO:
                needed.add(IMPORTS_ALSO[name])
    if "keras" in needed and "KERAS_BACKEND" not in os.environ:
        needed.add("torch")  # the backend it runs on here
    return sorted(needed)


def missing_modules(code: str) -> list[str]:
    return [name for name in needed_modules(code) if importlib.util.find_spec(name) is None]


def run_block(block: Block, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a block as a script in ``directory``; its namespace afterwards. Tracebacks name the README and
    its line numbers."""
    monkeypatch.chdir(directory)
    if "keras" in needed_modules(block.code) and "KERAS_BACKEND" not in os.environ:
        monkeypatch.setenv("KERAS_BACKEND", "torch")
    if block.key in RUN_WITHOUT_TORCH:
        monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.readme), "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(code, namespace)
    return namespace


class Section:
    """One section's temporary directory, and what became of each of its blocks that ran."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.outcomes: dict[int, str] = {}  # block index -> "passed", "failed: ..." or "skipped: ..."


@pytest.fixture(scope="module")
def sections(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Block], Section]:
    made: dict[tuple[str, str], Section] = {}

    def section_of(block: Block) -> Section:
        key = (block.readme, block.section)
        if key not in made:
            made[key] = Section(tmp_path_factory.mktemp("readme"))
        return made[key]

    return section_of


@pytest.fixture(autouse=True)
def restore_thread_count():
    """A block may set the kernels' thread count for the process (the Use section does)."""
    before = fr.get_num_threads()
    yield
    fr.set_num_threads(before)


def run_in_section(block: Block, section: Section, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the earlier blocks of the section that have not run (skipping or failing as they did), then
    this one, recording each outcome."""
    for earlier in BLOCKS:
        if earlier.readme != block.readme or earlier.section != block.section or earlier.index >= block.index:
            continue
        if earlier.index not in section.outcomes:
            if missing_modules(earlier.code):
                section.outcomes[earlier.index] = f"skipped: needs {', '.join(missing_modules(earlier.code))}"
            else:
                try:
                    run_block(earlier, section.directory, monkeypatch)
                    section.outcomes[earlier.index] = "passed"
                except Exception as exc:  # reported by this block's test, and by that block's own
                    section.outcomes[earlier.index] = f"failed: {type(exc).__name__}: {exc}"
        outcome = section.outcomes[earlier.index]
        if outcome.startswith("skipped"):
            pytest.skip(f"continues block {earlier.index} of its section, which was {outcome}")
        if outcome.startswith("failed"):
            pytest.fail(f"continues block {earlier.index} of its section, which {outcome}")
    missing = missing_modules(block.code)
    if missing:
        section.outcomes[block.index] = f"skipped: needs {', '.join(missing)}"
        pytest.skip(f"needs {', '.join(missing)}, not installed")
    try:
        namespace = run_block(block, section.directory, monkeypatch)
    except Exception as exc:
        section.outcomes[block.index] = f"failed: {type(exc).__name__}: {exc}"
        raise
    section.outcomes[block.index] = "passed"
    return namespace


# -- what the blocks' comments promise ---------------------------------------------------------------------


def check_use(ns: dict[str, Any]) -> None:
    import torch

    lstm, x, tape, g = ns["lstm"], ns["x"], ns["tape"], ns["g"]
    y, (h_n, c_n) = lstm(x)
    assert (y.shape, h_n.shape, c_n.shape) == ((10, 4, 32), (2, 4, 32), (2, 4, 32))
    assert g.input.shape == x.shape and [s.shape for s in g.state] == [(2, 4, 32), (2, 4, 32)]
    assert set(g.params) == set(lstm.state_dict())
    assert tape.output.shape == (10, 4, 32)
    # the GRU loaded from PyTorch gives PyTorch's numbers
    with torch.no_grad():
        expected, _ = ns["model"](torch.zeros((4, 10, 16)))
    assert_scaled_close(ns["y"], expected, *VS_TORCH[np.float32], "GRU from torch vs torch")
    assert fr.get_num_threads() == 2


def check_models(ns: dict[str, Any]) -> None:
    import torch

    torch_lstm, lstm, x = ns["torch_lstm"], ns["lstm"], ns["x"]
    assert isinstance(lstm, torch.nn.LSTM) and ns["out"].shape == (4, 10, 32)
    with torch.no_grad():
        expected, _ = torch_lstm(x)
    assert_scaled_close(ns["out"], expected, *VS_TORCH[torch.float32], "fusedrnn.torch vs torch.nn")
    assert all(p.grad is not None for p in lstm.parameters()), "backward reached every parameter"
    assert isinstance(ns["module"], torch.nn.LSTM)
    assert ns["layers"] and all(isinstance(layer, fr.RNNBase) for layer in ns["layers"].values())
    assert isinstance(ns["layer"], fr.GRU) and ns["layer"].hidden_size == 32


def check_deploy_with_torch(ns: dict[str, Any]) -> None:
    assert Path("model.frnn").is_file()


def check_deploy_without_torch(ns: dict[str, Any]) -> None:
    assert ns["y"].shape == (1, 6, 16) and ns["logits"].shape == (1, 2)


def check_train(ns: dict[str, Any]) -> None:
    logits, labels = ns["logits"].astype(np.float64), ns["labels"]

    def loss(z: np.ndarray) -> float:  # the mean softmax cross-entropy, written independently
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))

    step = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(*logits.shape):
        bump = np.zeros_like(logits)
        bump[index] = step
        numeric[index] = (loss(logits + bump) - loss(logits - bump)) / (2 * step)
    np.testing.assert_allclose(ns["grad_logits"], numeric, **FLOAT32_VS_FINITE_DIFFERENCES.kw())
    assert np.any(ns["head"]["W"] != 0) and np.any(ns["head"]["b"] != 0), "the step updated the head"
    assert ns["y_t"].shape == (4, 64)


def check_dask(ns: dict[str, Any]) -> None:
    model, sequences, vectors = ns["model"], ns["sequences"], ns["vectors"]
    assert len(vectors) == len(sequences) == 200
    for sequence, vector in zip(sequences, vectors):
        _, h_n = model(sequence)  # one sequence alone, unpadded, in this process
        np.testing.assert_allclose(vector, h_n[-1], **REGROUPED_F32.kw())


CHECKS: dict[tuple[str, str, int], Callable[[dict[str, Any]], None]] = {
    ("README.md", "Use", 1): check_use,
    ("README.md", "Models from elsewhere", 1): check_models,
    ("README.md", "Deploy a whole model", 1): check_deploy_with_torch,
    ("README.md", "Deploy a whole model", 2): check_deploy_without_torch,
    ("README.md", "Train and stream", 1): check_train,
    ("README.md", "Scale out with Dask", 1): check_dask,
}
# Warnings other projects raise while a block runs (the tests turn warnings into errors).
KERAS_ARRAY = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"  # NumPy 2
OTHERS_WARNINGS = {
    ("README.md", "Models from elsewhere", 1): (KERAS_ARRAY,),
    ("README.md", "Scale out with Dask", 1): (
        "ignore::DeprecationWarning",
        "ignore::ResourceWarning",
        "ignore:Port 8787 is already in use:UserWarning",  # the dashboard then takes another port
    ),
}
# "On the machine without torch": run where `import torch` fails.
RUN_WITHOUT_TORCH = {("README.md", "Deploy a whole model", 2)}


# -- the tests -----------------------------------------------------------------------------------------------


# Blocks that take more than about 2 s (importing Keras, starting Dask's worker processes).
SLOW = {("README.md", "Models from elsewhere", 1), ("README.md", "Scale out with Dask", 1)}


def _block_params() -> list[Any]:
    params = []
    for b in BLOCKS:
        marks = [pytest.mark.filterwarnings(f) for f in OTHERS_WARNINGS.get(b.key, ())]
        if b.key in SLOW:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(b, id=b.id, marks=marks))
    return params


@pytest.mark.parametrize("block", _block_params())
def test_readme_block_runs(
    block: Block, sections: Callable[[Block], Section], monkeypatch: pytest.MonkeyPatch
) -> None:
    if block.key in RUN_WITHOUT_TORCH:
        assert "torch" not in block.code, "a block for the machine without torch mentions torch"
    namespace = run_in_section(block, sections(block), monkeypatch)
    check = CHECKS.get(block.key)
    if check is not None:
        check(namespace)


def test_every_section_with_code_is_found():
    """The walk itself: the sections known to hold python blocks are found, and each check and
    exception names a block that exists, so that nothing passes by running nothing."""
    keys = {block.key for block in BLOCKS}
    assert set(CHECKS) <= keys, f"checks of blocks not found: {sorted(set(CHECKS) - keys)}"
    assert RUN_WITHOUT_TORCH <= keys and set(OTHERS_WARNINGS) <= keys and SLOW <= keys
    sections = {(block.readme, block.section) for block in BLOCKS}
    assert {("README.md", s) for s in ("Use", "Train and stream", "Scale out with Dask")} <= sections


def test_setup_commands_are_the_ones_ci_runs():
    setup = [
        f for f in fenced_blocks((ROOT / "README.md").read_text(encoding="utf-8")) if f.section == "Set up"
    ]
    assert [f.language for f in setup] == ["sh", "sh"]
    assert [f.text.strip() for f in setup] == SETUP_COMMANDS


# -- the machinery can fail -------------------------------------------------------------------------------


def test_a_broken_block_fails_at_its_readme_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    broken = Block("README.md", "Use", 1, 40, "total = 1 + 1\nassert total == 3, 'wrong sum'\n")
    with pytest.raises(AssertionError, match="wrong sum") as caught:
        run_block(broken, tmp_path, monkeypatch)
    last = caught.traceback[-1]
    assert Path(str(last.path)) == ROOT / "README.md" and last.lineno + 1 == 41


def test_fences_and_sections_are_read_as_written():
    markdown = (
        "## One\n\n```python\na = 1\n```\n\n```sh\n## not a heading\necho\n```\n\n"
        "## Two\n```python\nb = 2\n\nc = 3\n```\n"
    )
    fences = fenced_blocks(markdown)
    assert [(f.language, f.section, f.line, f.text) for f in fences] == [
        ("python", "One", 4, "a = 1\n"),
        ("sh", "One", 8, "## not a heading\necho\n"),
        ("python", "Two", 14, "b = 2\n\nc = 3\n"),
    ]
    with pytest.raises(AssertionError, match="never closed"):
        fenced_blocks("```python\na = 1\n")


def test_optional_modules_are_found_from_the_imports():
    code = "import numpy as np\nimport fusedrnn.torch as frt\nfrom dask import bag\nfr.to_onnx(layer, 'm')\n"
    assert needed_modules(code) == ["dask", "fusedrnn", "numpy", "onnx", "torch"]
    assert missing_modules("import no_such_module_for_fusedrnn_tests\n") == [
        "no_such_module_for_fusedrnn_tests"
    ]
