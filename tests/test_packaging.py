"""The two ways to install agree: the development setup (requirements.txt, setup.sh) and the worker-only extra."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines) -> dict[str, str]:
    """name -> the rest of the requirement (version and platform marker)."""
    pins = {}
    for line in lines:
        requirement = line.split("#")[0].strip()
        if requirement:
            name = re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0].lower()
            pins[name] = requirement[len(name):].strip()
    return pins


def test_worker_extra_pins_what_the_setup_installs():
    extra = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["worker"])
    setup = _pins((ROOT / "requirements.txt").read_text().splitlines())
    torch = re.search(r'"torch(==[^"]+)"', (ROOT / "setup.sh").read_text()).group(1)
    setup["torch"] = torch
    assert set(extra) <= set(setup), f"not installed by setup.sh: {sorted(set(extra) - set(setup))}"
    for name, spec in extra.items():
        assert spec == setup[name], f"{name}: the worker extra asks for {spec}, the setup installs {setup[name]}"
    # What the capture engine imports must be in the extra (the tests' tools need not be).
    assert {"torch", "mediapipe", "numpy", "scipy", "trimesh", "embreex"} <= set(extra)
    # Embree is only asked for where it has wheels: elsewhere the install would fail (see core/render.py).
    assert 'sys_platform == "win32"' in extra["embreex"] and "darwin" not in extra["embreex"]


def test_install_worker_pins_what_the_worker_extra_asks_for():
    """The add-on's Install Worker (addon/worker_requirements.txt, torch in addon/worker_install.py) installs what
    the worker extra names, at the same pins."""
    extra = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["worker"])
    one_click = _pins((ROOT / "addon" / "worker_requirements.txt").read_text().splitlines())
    installer = (ROOT / "addon" / "worker_install.py").read_text()
    one_click["torch"] = re.search(r'TORCH = "torch(==[^"]+)"', installer).group(1)
    assert one_click == extra
