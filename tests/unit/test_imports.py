"""Importing any module of the service builds nothing: no app, no settings, no connections."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, socket, sys, threading
    import faust

    built = []
    original = faust.App.__init__

    def counting(self, *args, **kwargs):
        built.append(args[:1])
        original(self, *args, **kwargs)

    faust.App.__init__ = counting
    connected = []
    real_connect = socket.socket.connect

    def connect(self, address):
        connected.append(address)
        return real_connect(self, address)

    socket.socket.connect = connect
    threads = threading.active_count()
    names = []
    for package in ("ltv", "state", "streams"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            importlib.import_module(info.name)
            names.append(info.name)
    assert "streams.worker" in names and "streams.unit_of_work" in names, names
    assert not built, f"faust.App built at import: {built}"
    assert not connected, f"connections opened at import: {connected}"
    assert threading.active_count() == threads, "threads started at import"
    # Only `ltv evaluate` draws: the worker never pays for matplotlib.
    assert "streams.evaluation_plots" in names and "matplotlib" not in sys.modules
    print(len(names))
    """
)


def test_importing_every_module_has_no_side_effects() -> None:
    # Settings that cannot validate: a module that loads them at import fails.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTV_")}
    env["LTV_PARTITIONS"] = "not-a-number"
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip()) > 40
