"""The package's structure: no import circle in ``src/unihub`` (type-only imports included),
no module importing another module's private name, no module past its size."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unihub"
PKG = "unihub"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of ``mod``."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith(PKG)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PKG):
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            out += [(s, []) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in mods]
            if rest:
                out.append((target, rest))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps = set()
        for target, _ in _imports(mod, path, mods):
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target != mod:
                deps.add(target)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _is_package_init_edge(a: str, b: str) -> bool:
    # a package's __init__ re-exports its modules, which import siblings through it: not a
    # circle of design (``unihub.transfer`` <-> ``unihub.transfer.engine``)
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_circles() -> None:
    graph = _graph()
    pruned = {m: {d for d in deps if not _is_package_init_edge(m, d)} for m, deps in graph.items()}
    assert _cycles(pruned) == []


def test_no_private_names_of_other_modules() -> None:
    mods = _modules()
    bad = []
    for mod, path in mods.items():
        for target, names in _imports(mod, path, mods):
            if target == mod or mod.startswith(target + "."):
                continue  # a package's own modules may share its private helpers
            same_pkg = target.rsplit(".", 1)[0] == mod.rsplit(".", 1)[0]
            for n in names:
                if n.startswith("_") and not n.startswith("__") and not same_pkg:
                    bad.append(f"{mod} imports {target}.{n}")
    assert bad == []


# Modules allowed past the limit, each with its reason and the size it may not outgrow.
LARGE = {
    # one file's transfer: its connection threads, the ramp's hooks and the body writes share
    # the transfer's state (scheduler, journal, hasher); split when that state gets a home
    "unihub.transfer.filetask": 640,
}


def test_modules_are_small() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    big = {m: n for m, n in sizes.items() if n > LARGE.get(m, 520)}
    assert big == {}


# The layers, lowest first (docs/development.md draws them): a module may import only from
# its own layer or below. Keys are module names or prefixes; the longest match decides.
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "errors",
            "units",
            "timeouts",
            "retry",
            "limits",
            "redirects",
            "models",
            "safety",
            "progress",
            "transport",
            "settings",
            "xet",
        ],
        0,
    ),
    **dict.fromkeys(["hubs.registry", "hubs.source", "hubs.context", "auth", "ids", "layout"], 1),
    "hubs": 2,
    **dict.fromkeys(["session", "sources"], 3),
    **dict.fromkeys(["probing", "transfer"], 4),
    "plan": 5,
    **dict.fromkeys(["request", "pipeline"], 6),
    **dict.fromkeys(
        [
            "api",
            "dryrun",
            "probe",
            "serve",
            "cluster",
            "patch",
            "patchserver",
            "runner",
            "cli",
            "cli_cache",
            "cli_serve",
            "cli_args",
            "cli_report",
            "cachetool",
            "demo",
            "",
            "__main__",
        ],
        7,
    ),
    "testing": 1,  # the fake hubs stand beside the package: they use only the Xet format
}


def _layer(module: str) -> int:
    name = module.removeprefix(PKG).lstrip(".")
    while name not in LAYERS:
        assert "." in name, f"{module} has no layer in LAYERS"
        name = name.rsplit(".", 1)[0]
    return LAYERS[name]


def test_no_arrow_runs_up_the_layers() -> None:
    up = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in _graph().items()
        for d in deps
        if _layer(d) > _layer(m)
    ]
    assert up == []
