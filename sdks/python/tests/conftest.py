"""A real stack for the tests: the Rust engine of the `polyglot` example (it runs the
workflows) and `duraflow serve` (it serves the worker protocol), both on one SQLite file.

The binaries come from DURAFLOW_BIN and DURAFLOW_POLYGLOT_BIN, or else from the Cargo target
directory (`cargo build -p duraflow-cli -p duraflow --example polyglot` builds them)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TOKEN = "py-test-token"
DEADLINE = 30.0
T = TypeVar("T")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def binary(env: str, default: Path) -> str:
    path = os.environ.get(env) or str(default)
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: build it (cargo build -p duraflow-cli -p duraflow --example polyglot) or set {env}")
    return path


def spawn(args: List[str], env: dict, ready: str) -> "tuple[subprocess.Popen[str], str]":
    """Starts a process and waits for the stderr line containing `ready`; that line."""
    process = subprocess.Popen(
        args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(f"[{Path(args[0]).name}] {line}")
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            process.kill()
            pytest.fail(f"{args[0]} did not print {ready!r} within {DEADLINE}s")
        if ready in line:
            return process, line


class Stack:
    def __init__(self, url: str, db: str, tmp: Path) -> None:
        self.url = url
        self.token = TOKEN
        self.db = db
        self.tmp = tmp


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    db = f"sqlite:{tmp_path / 'runs.db'}"
    env = dict(os.environ, DURAFLOW_DATABASE_URL=db, RUST_LOG="warn")
    engine, _ = spawn(
        [binary("DURAFLOW_POLYGLOT_BIN", TARGET / "debug" / "examples" / "polyglot")],
        env, "polyglot engine ready",
    )
    env.pop("DURAFLOW_DATABASE_URL")
    server, line = spawn(
        [binary("DURAFLOW_BIN", TARGET / "debug" / "duraflow"), "--db", db, "serve",
         "--listen", "127.0.0.1:0", "--token", TOKEN, "--max-body", "65536"],
        env, "listening on http://",
    )
    address = line.split("listening on http://")[1].split()[0]
    try:
        yield Stack(f"http://{address}", db, tmp_path)
    finally:
        # Killed: a graceful stop would wait for the long polls of stopped workers.
        server.kill()
        assert engine.stdin is not None
        engine.stdin.close()
        for p in (server, engine):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def until(what: str, check: Callable[[], Optional[T]], deadline: float = DEADLINE) -> T:
    """Polls `check` until it returns something other than None."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.02)
