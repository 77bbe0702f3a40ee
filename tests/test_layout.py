"""The package's layering: no module imports one above it (README, "Python")."""

import ast
from pathlib import Path

import gradnap

ROOT = Path(gradnap.__file__).parent
#: Bottom to top. A module may import from its own level and the levels below it.
LEVELS = [
    {
        "_version",
        "_lazy",
        "errors",
        "defaults",
        "fileio",
        "geometry",
        "alphabet",
        "threads",
        "progress",
    },
    {"features"},
    {"corpus"},
    {"asr"},
    {"engine"},
    {"method"},
    {"analysis"},
    {"figures"},
    {"report"},
    {"cli", "__main__"},
]
#: Order of the modules inside gradnap.method (data flows down this list).
METHOD_ORDER = [
    "examples",
    "groupings",
    "windows",
    "spectrum",
    "accumulators",
    "metadata",
    "profiles",
    "result",
    "compare",
    "collector",
    "run",
]


def level(top: str) -> int:
    return next(i for i, names in enumerate(LEVELS) if top in names)


def imports(path: Path) -> set[str]:
    """Every ``gradnap.*`` module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("gradnap."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gradnap.")}
    return out


def test_every_module_is_on_a_level():
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.glob("*")}
    tops -= {"__init__", "__pycache__", "py.typed", "data"}
    assert {t for t in tops if not any(t in names for names in LEVELS)} == set()


def test_no_module_imports_one_above_it():
    upward = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts == ("__init__.py",):
            continue  # the package's lazy public surface
        mine = level(rel.parts[0].removesuffix(".py"))
        for name in imports(path):
            theirs = level(name.split(".")[1])
            if theirs > mine:
                upward.append(f"{rel} imports {name}")
    assert upward == []


def test_method_modules_import_only_earlier_ones():
    upward = []
    for i, mod in enumerate(METHOD_ORDER):
        for name in imports(ROOT / "method" / f"{mod}.py"):
            parts = name.split(".")
            if parts[1] == "method" and len(parts) > 2 and parts[2] in METHOD_ORDER:
                if METHOD_ORDER.index(parts[2]) >= i:
                    upward.append(f"method/{mod}.py imports {name}")
    assert upward == []
    assert {p.stem for p in (ROOT / "method").glob("*.py")} - {"__init__"} == set(METHOD_ORDER)


def test_engine_internals_are_private():
    outside = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in ROOT.rglob("*.py")
        if path.relative_to(ROOT).parts[0] != "engine"
        for name in imports(path)
        if name.startswith("gradnap.engine._")
    ]
    assert outside == []
