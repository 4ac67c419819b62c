"""The package's shape: imports point one way (down the layers), no import cycle, lazy imports only for
optional dependencies (with a comment), and every package installed.

Every module of lwop_jax is read with ``ast``: imports at module level and inside functions both count.
"""

import ast
import pathlib

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / 'lwop_jax'

# Layers, lowest first: a module may import modules of its own layer or lower ones, never higher ones.
LAYERS = (
    ('lwop_jax', 'lwop_jax.errors', 'lwop_jax.atomic', 'lwop_jax.paths', 'lwop_jax.skeleton', 'lwop_jax.schema'),
    (
        'lwop_jax.inference.preprocess',
        'lwop_jax.inference.peaks',
        'lwop_jax.inference.assembly',
        'lwop_jax.inference.decode',
        'lwop_jax.inference.results',
        'lwop_jax.inference.tracking',
        'lwop_jax.inference.media',
        'lwop_jax.inference.image_header',
        'lwop_jax.inference.runs',
        'lwop_jax.data',
        'lwop_jax.synthetic',
    ),
    ('lwop_jax.model',),
    ('lwop_jax.checkpoints',),
    ('lwop_jax.inference.backends', 'lwop_jax.inference.estimator', 'lwop_jax.inference'),
    ('lwop_jax.evaluation',),
    ('lwop_jax.training',),
    ('lwop_jax.serve',),  # the ASGI app over the estimator (DESIGN.md: above inference, below cli)
    ('lwop_jax.demo', 'lwop_jax.configs'),
    ('lwop_jax.cli', 'lwop_jax.__main__'),
)
# Third-party packages that not every install has: the only ones a function may import lazily.
OPTIONAL = {
    'jax',
    'jaxlib',
    'flax',
    'optax',
    'orbax',
    'tensorflow',
    'tensorflow_datasets',
    'openvino',
    'nncf',
    'pycocotools',
    'jax2onnx',
    'onnx',
    'ml_collections',
    'ml_dtypes',
    'starlette',  # the serve extra
    'uvicorn',
    'prometheus_client',
    'python_multipart',
    'websockets',
}


def module_files() -> dict[str, pathlib.Path]:
    files = {}
    for path in sorted(PACKAGE_ROOT.rglob('*.py')):
        parts = list(path.relative_to(PACKAGE_ROOT).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        files['.'.join(['lwop_jax', *parts])] = path
    return files


MODULES = module_files()


def layer_of(module: str) -> int:
    if module.endswith('.__main__'):  # an entry point (python -m), like the CLIs
        return len(LAYERS) - 1
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + '.')
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    assert best is not None, f'{module} is in no layer: add it to LAYERS'
    return best[1]


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of ``module``; ``from X import Y``
    counts as X.Y when that is a module of the package, else as X."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ''
                if child.level:  # relative: from the package, child.level - 1 packages up
                    parents = package.split('.')[: len(package.split('.')) - child.level + 1]
                    base = '.'.join(parents + ([base] if base else []))
                for alias in child.names:
                    target = f'{base}.{alias.name}'
                    found.append((target if target in MODULES else base, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def internal_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    return {
        module: {
            target for target, _, lazy in imports_of(module) if target in MODULES and not (top_level_only and lazy)
        }
        for module in MODULES
    }


def test_no_import_cycle():
    graph = internal_graph()
    state, cycles = {}, []

    def walk(module, trail):
        state[module] = 'open'
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                walk(target, trail + [target])
        state[module] = 'done'

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, 'import cycles: ' + '; '.join(' -> '.join(cycle) for cycle in cycles)


def test_imports_point_down_the_layers():
    upward = [
        f'{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)}) at line {line}'
        for module in MODULES
        for target, line, _ in imports_of(module)
        if target in MODULES and layer_of(target) > layer_of(module)
    ]
    assert not upward, '\n'.join(upward)


def loads_optional(module: str, graph: dict[str, set[str]], seen=None) -> bool:
    """Whether importing ``module`` (its top-level imports, transitively) loads an optional package."""
    seen = set() if seen is None else seen
    if module in seen:
        return False
    seen.add(module)
    if any(target.split('.')[0] in OPTIONAL for target, _, lazy in imports_of(module) if not lazy):
        return True
    return any(loads_optional(target, graph, seen) for target in graph[module])


def test_lazy_imports_only_keep_optional_dependencies_unloaded_and_say_so():
    top_level = internal_graph(top_level_only=True)
    problems = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        lazy = [(target, line) for target, line, is_lazy in imports_of(module) if is_lazy]
        lazy_lines = {line for _, line in lazy}
        for target, line in lazy:
            optional = target.split('.')[0] in OPTIONAL or (target in MODULES and loads_optional(target, top_level))
            if not optional:
                problems.append(f'{module}:{line} imports {target} inside a function: not an optional dependency')
            # The comment is on the import, on the line above, or on the first import of its group.
            first = line
            while True:  # back over the lazy imports just above (blank lines between groups allowed)
                above = first - 1
                while above >= 1 and not lines[above - 1].strip():
                    above -= 1
                if above not in lazy_lines:
                    break
                first = above
            if not any('#' in lines[index - 1] for index in (first - 1, first, line) if index >= 1):
                problems.append(f'{module}:{line} imports {target} inside a function without a comment saying why')
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize(
    'package',
    [
        'lwop_jax.inference.preprocess',
        'lwop_jax.inference.decode',
        'lwop_jax.inference.results',
        'lwop_jax.inference.tracking',
        'lwop_jax.inference.media',
        'lwop_jax.inference.runs',
        'lwop_jax.inference.backends',
        'lwop_jax.inference.estimator',
    ],
)
def test_inference_modules_load_no_optional_dependency(package):
    assert not loads_optional(package, internal_graph(top_level_only=True))


def test_configs_folder_is_the_installed_package():
    """The top-level configs/ of the checkout is lwop_jax/configs (a link), so both paths name one file."""
    top_level = PACKAGE_ROOT.parent / 'configs'
    assert top_level.resolve() == (PACKAGE_ROOT / 'configs').resolve()


def test_modules_stay_small():
    """Modules under ~400 lines (a long table of data may go further), one job each."""
    long = {module: n for module, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 420}
    assert not long, long
