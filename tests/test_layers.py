"""The package's layers (docs/architecture.md): import-linter's contracts (.importlinter), no import cycle between
eccentric_det's subpackages, and imports inside functions only where a heavy dependency is deferred on purpose.
Imports inside functions count as imports in all three."""
import ast
import os
import subprocess
import sys

import grimp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "eccentric_det")

# Imports placed inside functions on purpose: module -> {imported module: why}. Anything else belongs at the top.
DEFERRED = {
    "eccentric_det.baselines.sc2bench": {"sc2bench.models.layer": "sc2bench is an optional extra (bench)"},
    "eccentric_det.codec.latent_codecs": {".guarded_ans": "the bounded decoder compiles with numba: cloud side only"},
    "eccentric_det.codec.validation": {"PIL": "decoding an image payload only"},
    "eccentric_det.edge.runtime": {"onnxruntime": "only the onnx backend of an exported edge"},
    "eccentric_det.evaluation.build": {"detectron2": "a probe for the compiled fast COCO evaluator"},
    "eccentric_det.evaluation.curves": {"matplotlib": "plotting only"},
    "eccentric_det.evaluation.video": {"av": "PyAV, the H.264 baseline of the video benchmark only"},
    "eccentric_det.recipe.engine": dict.fromkeys(("..tasks", "tqdm"), "the recipe's CLI answers --help and refuses "
                                                                       "bad arguments without loading Detectron2"),
    "eccentric_det.recipe.options": dict.fromkeys(("..data.register", "detectron2.data", "yaml"),
                                                  "the recipe's CLI answers --help and refuses bad arguments without "
                                                  "loading Detectron2"),
    "eccentric_det.recipe.plan": dict.fromkeys(("..config", "..data", "..tasks", "detectron2.data"),
                                               "the recipe's CLI answers --help and refuses bad arguments without "
                                               "loading Detectron2"),
    "eccentric_det.reports.pareto": {"matplotlib.figure": "plotting only", "scipy.interpolate": "BD-rate only"},
    "eccentric_det.serving.http_app": {"uvicorn": "running the server only"},
    "eccentric_det.serving.ray_app": {"eccentric_det.modeling": "Ray Serve ships the deployment class by value: "
                                                                "its replica registers the Detectron2 components"},
    "eccentric_det.serving.worker": dict.fromkeys(("..checkpoint", "..codec.guarded_ans", "..data.datasets", ".config",
                                                   ".detections", "detectron2.utils.logger"),
                                                  "the model loads in the worker process, not in the HTTP front"),
}


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                yield module.removesuffix(".__init__"), path


def deferred_imports(path):
    """The modules imported inside functions of the file at ``path`` (relative imports as written)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found.update(a.name for a in inner.names)
                elif isinstance(inner, ast.ImportFrom):
                    found.add("." * inner.level + (inner.module or ""))
    return found


def package_cycles(edges):
    """The strongly connected components of more than one node of a {node: set(nodes)} graph (Tarjan)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_import_linter_contracts_are_kept():
    # in a subprocess: import-linter configures logging, which other tests' caplog relies on
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 3 kept, 0 broken" in run.stdout


def test_no_import_cycle_between_subpackages():
    graph = grimp.build_graph("eccentric_det", cache_dir=None)
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731  (eccentric_det.<subpackage or module>)
    edges = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("eccentric_det.") and top(imported) != top(module):
                edges.setdefault(top(module), set()).add(top(imported))
    assert package_cycles(edges) == []


def test_cycle_finder_finds_cycles():
    assert package_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert package_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_only_the_named_deferrals():
    found = {module: deferred_imports(path) for module, path in _modules()}
    found = {module: imports for module, imports in found.items() if imports}
    assert found == {module: set(why) for module, why in DEFERRED.items()}
