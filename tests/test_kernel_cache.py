"""numba's cache folder is named after the sources of the cached CPU drivers: every backend
file with an ``@njit(..., cache=True)`` function is hashed, so an edited body is never
served stale from the cache (numba itself checks only the decorated function's file)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from numbacnn.backends import kernel_cache

PACKAGE = Path(kernel_cache.__file__).resolve().parent.parent
CACHED = re.compile(r"^@njit\([^)\n]*cache=True", re.MULTILINE)  # a decorator line


def test_every_backend_file_with_cached_drivers_is_hashed():
    found = {path.name for path in (PACKAGE / "backends").glob("*.py")
             if CACHED.search(path.read_text())}
    assert found == set(kernel_cache.CACHED_DRIVER_FILES)


def test_every_file_a_kernel_compiles_in_is_hashed():
    """A kernel body that calls a function jitted from outside kernels/ (pool.py's
    windows_inside, from geometry.py) is stale when that file changes: it is hashed."""
    imported = set()
    for path in (PACKAGE / "kernels").glob("*.py"):
        imported |= set(re.findall(r"^from numbacnn\.(\w+) import", path.read_text(), re.M))
    assert {f"{name}.py" for name in imported - {"kernels"}} <= set(
        kernel_cache.COMPILED_IN_FILES)


@pytest.mark.parametrize("edited", ["kernels/conv.py", "backends/cpu.py", "backends/cpu_conv.py",
                                    "backends/cpu_pool.py", "geometry.py"])
def test_an_edited_source_changes_the_cache_folder(edited: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    for folder in ("kernels", "backends"):
        shutil.copytree(PACKAGE / folder, tmp_path / folder)
    for name in kernel_cache.COMPILED_IN_FILES:
        shutil.copy(PACKAGE / name, tmp_path / name)
    monkeypatch.setattr(kernel_cache, "_PACKAGE", tmp_path)
    before = kernel_cache.source_hash()
    with open(tmp_path / edited, "a") as f:
        f.write("# edited\n")
    assert kernel_cache.source_hash() != before


def test_every_cached_driver_is_cached_in_the_hashed_folder(tmp_path: Path):
    """Each backend file of cached drivers points numba at the hashed folder while its
    decorators run (cpu_pool.py, imported by cpu.py before cpu.py sets the folder, was
    cached beside its own source and served stale after an edit of kernels/pool.py)."""
    program = (
        "from numbacnn.backends import cpu, cpu_conv, cpu_pool, kernel_cache\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "root = str(kernel_cache.cache_root() / kernel_cache.source_hash())\n"
        "for module in (cpu, cpu_conv, cpu_pool):\n"
        "    for name, f in vars(module).items():\n"
        "        if isinstance(f, Dispatcher) and f._cache.cache_path:\n"
        "            if not f._cache.cache_path.startswith(root):\n"
        "                print(module.__name__, name, f._cache.cache_path)\n")
    env = {**os.environ, "NUMBACNN_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
