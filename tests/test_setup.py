"""The set-up works off this machine: the lock resolves from PyPI-style names, environment.yml agrees with it,
and `make lab` serves the chapters as notebooks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.!]*)$")  # no "+local" version suffix


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"requirements.lock: {line!r} is not an exact PyPI-style pin name==version (no '+local')"
        pins[_norm(match[1])] = match[2]
    return pins


def torch_index() -> str:
    """The extra index the Makefile passes to pip for CPU-only torch (the README documents it)."""
    match = re.search(r"^TORCH_INDEX \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile must set TORCH_INDEX"
    return match[1]


def test_lock_pins_are_pypi_style_and_cover_the_project():
    pins = lock_pins()
    assert pins["torch"] == "2.13.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    missing = sorted({_requirement_name(r) for r in wanted} - set(pins))
    assert not missing, f"pyproject.toml needs packages that requirements.lock does not pin: {missing}"


def test_environment_yml_agrees_with_pyproject_and_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda if d.startswith("python="))
    version = python.split("=")[1]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires.startswith(">=") and tuple(map(int, version.split("."))) >= tuple(
        map(int, requires[2:].split(".")))
    assert "make" in conda and any(d.startswith("nodejs") for d in conda)  # make and npm build the book
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"--extra-index-url {torch_index()}" in pip  # the same CPU-only torch as the Makefile
    assert "-r requirements.lock" in pip  # the same pins as `make`
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    editable = next(p for p in pip if p.startswith("-e ."))
    named = re.search(r"\[(.*)\]", editable)[1].split(",")
    assert sorted(named) == sorted(extras), "environment.yml installs every extra of pyproject.toml"
    # No package that conda installs is pinned differently by the lock.
    pins = lock_pins()
    for dep in conda:
        name, _, ver = dep.partition("=")
        if _norm(name) in pins and ver:
            assert pins[_norm(name)].startswith(ver.lstrip("=")), dep


@pytest.mark.slow
def test_lock_resolves_with_pips_resolver(tmp_path):
    """pip's resolver, in dry-run mode and ignoring what is installed, accepts the lock from PyPI-style names
    alone (no extra index: torch==2.13.0 is on PyPI too) and needs nothing beyond it (complete and consistent)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-r", str(LOCK)],
        capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {_norm(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    pins = lock_pins()
    assert set(resolved) == set(pins), sorted(set(resolved) ^ set(pins))
    for name, version in pins.items():
        assert resolved[name].split("+")[0] == version, (name, resolved[name], version)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_chapters_as_notebooks():
    port, token = _free_port(), "stagewise-test"
    args = f"--no-browser --port={port} --IdentityProvider.token={token} --ServerApp.ip=127.0.0.1"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": "/tmp/stagewise-test-jupyter-runtime"}
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/01_slt.md?type=notebook&content=1&token={token}"
        deadline, model = time.time() + 180, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    model = json.load(response)
                break
            except OSError:
                time.sleep(1)
        assert model is not None, proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no answer"
        assert model["type"] == "notebook"
        cells = model["content"]["cells"]
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells)
        overrides = ROOT / ".venv/share/jupyter/lab/settings/overrides.json"
        viewers = json.loads(overrides.read_text())["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
        assert viewers["markdown"] == "Jupytext Notebook"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
