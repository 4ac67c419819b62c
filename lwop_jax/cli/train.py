"""``lwop train`` / ``train.py``: trains Lightweight OpenPose as a config says; rerunning resumes."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import pathlib
import pkgutil
import sys
from collections.abc import Sequence

from lwop_jax import configs
from lwop_jax.cli import common
from lwop_jax.errors import InputFileError
from lwop_jax.training import host_heap, quiet

DESCRIPTION = """Trains Lightweight OpenPose: lwop train --config NAME|FILE --workdir DIR [--config.key=value ...]

Everything is in the config: a name of the configs shipped with lwop_jax (default, tiny, demo,
coco_stage1, coco_stage2, coco_stage3, coco_recipe) or a path to a config file whose get_config()
returns an ml_collections.ConfigDict. --config.KEY=VALUE (or --config.KEY VALUE) overrides a key; nested
keys with dots (--config.stages.stage2.num_train_steps=100000). A recipe config (it has stage_order)
runs its stages one after the other. Rerunning a command resumes from WORKDIR's latest checkpoint.
"""
OVERRIDE_PREFIX = '--config.'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', required=True, help='config name (e.g. tiny, coco_stage1) or file')
    parser.add_argument(
        '--workdir', required=True, type=pathlib.Path, help='folder for checkpoints and TensorBoard logs'
    )


def parse_extra(args: argparse.Namespace, extra: list[str]) -> None:
    """The --config.KEY=VALUE / --config.KEY VALUE items as ``args.overrides`` [(KEY, VALUE)]; anything
    else is a usage error (ValueError)."""
    args.overrides, index = [], 0
    while index < len(extra):
        item = extra[index]
        if not item.startswith(OVERRIDE_PREFIX):
            raise ValueError(f'unrecognized arguments: {" ".join(extra[index:])}')
        key, has_value, value = item[len(OVERRIDE_PREFIX) :].partition('=')
        if not has_value:
            if index + 1 >= len(extra):
                raise ValueError(f'{item}: no value')
            value, index = extra[index + 1], index + 1
        args.overrides.append((key, value))
        index += 1


def config_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__))


def load_config_module(name_or_path: str):
    """A config module by name (lwop_jax.configs.NAME) or from a file."""
    path = pathlib.Path(name_or_path)
    if path.suffix == '.py' or path.exists():
        if not path.is_file():
            raise InputFileError(f'{path}: config file not found')
        spec = importlib.util.spec_from_file_location(f'lwop_jax_config_{path.stem}', path)
        if spec is None or spec.loader is None:
            raise InputFileError(f'{path}: cannot be loaded as a Python module')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if name_or_path not in config_names():
        raise InputFileError(
            f'{name_or_path}: no such config file or shipped config (shipped: {", ".join(config_names())})'
        )
    return importlib.import_module(f'lwop_jax.configs.{name_or_path}')


def load_config(name_or_path: str, overrides: Sequence[tuple[str, str]] = ()):
    """``get_config()`` of the config, with the overrides applied."""
    module = load_config_module(name_or_path)
    if not callable(getattr(module, 'get_config', None)):
        raise InputFileError(f'{name_or_path}: a config file must define get_config()')
    config = module.get_config()
    for key, value in overrides:
        apply_override(config, key, value, name_or_path)
    return config


def parse_value(text: str, current, where: str):
    """``text`` as a value of ``current``'s type: strings as they are, booleans as true/false/1/0,
    everything else as a Python literal (numbers, tuples, lists)."""
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered not in ('true', 'false', '1', '0', 'yes', 'no'):
            raise InputFileError(f'{where}: {text!r} is not a boolean (true/false)')
        return lowered in ('true', '1', 'yes')
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InputFileError(f'{where}: {text!r} is not a {type(current).__name__}') from None
    if isinstance(current, tuple) and not isinstance(value, (tuple, list)):
        value = (value,)
    return tuple(value) if isinstance(current, tuple) else value


def apply_override(config, key: str, text: str, source: str) -> None:
    where = f'{OVERRIDE_PREFIX}{key}'
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
        if part not in node:
            raise InputFileError(f'{where}: {source} has no key {part!r}')
        node = node[part]
    if leaf not in node:
        raise InputFileError(f'{where}: {source} has no key {leaf!r}')
    try:
        node[leaf] = parse_value(text, node[leaf], where)
    except TypeError as exc:  # ConfigDict's type check, e.g. a tuple into an int
        raise InputFileError(f'{where}: {exc}') from None


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.verbose:
        print(f'config {args.config}:\n{config}')
    host_heap.keep_freed_memory()  # before JAX starts its threads (see host_heap)
    quiet.start_tensorflow_quietly(args.verbose)
    from lwop_jax.training import loop, recipe  # jax, tensorflow (the [train] extra): not for --help

    if 'stage_order' in config:
        recipe.run_recipe(config, args.workdir)
    else:
        loop.train_and_evaluate(config, args.workdir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
