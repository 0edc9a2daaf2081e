"""Shared fixtures: unique queue names (removed after each test), the repository's Rust and C
example programs (built on demand; CI has built them already), and process helpers."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shmq

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
_counter = itertools.count()


@pytest.fixture
def qname(request):
    """A queue name unique to this test and process, removed (if it exists) afterwards."""
    name = f"pytest-{os.getpid()}-{next(_counter)}"
    yield name
    try:
        shmq.remove(name)
    except shmq.NotFound:
        pass


@pytest.fixture
def queue(qname):
    """A fresh 64 KiB MPSC queue."""
    shmq.create(qname, capacity=1 << 16)
    return qname


def _run(cmd, **kw):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")


@pytest.fixture(scope="session")
def rust_examples() -> Path:
    """target/debug/examples with the producer and consumer examples built (a no-op after
    `cargo test --workspace --all-features`, which builds them)."""
    _run(["cargo", "build", "--all-features", "-p", "shmq", "--example", "producer", "--example", "consumer"])
    return TARGET / "debug" / "examples"


@pytest.fixture(scope="session")
def c_examples() -> Path:
    """The C examples of bindings/c, built against libshmq.a (dev profile)."""
    _run(["make", "-s", "-C", "bindings/c", "examples", "PROFILE=debug"])
    return TARGET / "debug" / "c-examples"


def python_child(code: str, *args: str, **kw) -> subprocess.Popen:
    """Starts a Python process running `code` with `args` in sys.argv[1:]."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )
