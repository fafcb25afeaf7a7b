"""Recording doubles of host modules, checked against the published type stubs.

A double records every call (name, args, kwargs) and fails the test at once
if the name does not exist in the stub (``maya-stubs``, ``types-houdini``) or
a keyword is not one of its parameters, so a typo or an invented flag fails
here as it would in the real host. Answers come from ``responders``.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any


def stub_file(package: str, relative: str) -> Path:
    """Path of a stub file inside an installed stub distribution (must be installed)."""
    for entry in sys.path:
        candidate = Path(entry) / package / relative
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{package}/{relative} not found: pip install the stub package")


@dataclass(frozen=True)
class Signature:
    params: frozenset[str]
    varkw: bool


def _sig(fn: ast.FunctionDef) -> Signature:
    a = fn.args
    names = {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
    return Signature(frozenset(names), a.kwarg is not None)


@cache
def functions(path: Path) -> dict[str, Signature]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: _sig(n) for n in tree.body if isinstance(n, ast.FunctionDef)}


@cache
def classes(path: Path) -> dict[str, dict[str, Signature]]:
    """Methods per class, inherited ones included (bases resolved by name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own: dict[str, dict[str, Signature]] = {}
    bases: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            own[node.name] = {m.name: _sig(m) for m in node.body if isinstance(m, ast.FunctionDef)}
            bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]

    def resolved(name: str, seen: frozenset[str] = frozenset()) -> dict[str, Signature]:
        out: dict[str, Signature] = {}
        for base in bases.get(name, []):
            if base in own and base not in seen:
                out.update(resolved(base, seen | {name}))
        out.update(own.get(name, {}))
        return out

    return {name: resolved(name) for name in own}


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class RecordingModule:
    """Stands in for a module of free functions (``maya.cmds``)."""

    stub: Path
    responders: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        sigs = functions(self.stub)
        assert name in sigs, f"{name!r} does not exist in {self.stub}"
        sig = sigs[name]

        def record(*args: Any, **kwargs: Any) -> Any:
            unknown = set(kwargs) - sig.params
            assert sig.varkw or not unknown, f"{name}(): unknown flags {sorted(unknown)}"
            self.calls.append(Call(name, args, kwargs))
            answer = self.responders.get(name)
            return answer(*args, **kwargs) if callable(answer) else answer

        return record

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


def check_method(stub: Path, cls: str, method: str, kwargs: dict[str, Any] | None = None) -> None:
    """Fail unless ``cls.method`` exists in the stub and accepts ``kwargs``."""
    table = classes(stub)
    assert cls in table, f"class {cls} not in {stub}"
    assert method in table[cls], f"{cls}.{method} not in {stub}"
    sig = table[cls][method]
    unknown = set(kwargs or {}) - sig.params
    assert sig.varkw or not unknown, f"{cls}.{method}(): unknown keywords {sorted(unknown)}"


def module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def purge(prefix: str) -> None:
    for name in list(sys.modules):
        if name == prefix or name.startswith(prefix + "."):
            del sys.modules[name]


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def signed_in_client(server: Any, home: Path) -> Any:
    """A workstation client signed in through the real device flow on the real server."""
    import threading

    from sealport.client import SealportClient
    from sealport.config import load_config
    from sealport.demo import DEMO_MARKER

    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("test profile\n")
    (home / "sealport.toml").write_text(Path(server.client_config_path).read_text())
    client = SealportClient(load_config(home / "sealport.toml"), demo=True)

    def on_code(auth: Any) -> None:
        threading.Thread(target=server.approve, args=(auth.user_code,), daemon=True).start()

    client.login(on_code)
    return client


def verified_by_format(client: Any, out: Path, formats: list[str]) -> dict[str, Any]:
    """One real, verified import per demo format (secure_import over real TLS)."""
    found: dict[str, Any] = {}
    for asset in client.assets():
        fmt = asset["format"]
        if fmt in formats and fmt not in found:
            found[fmt] = client.secure_import(asset["asset_id"], out / fmt)
    missing = set(formats) - set(found)
    assert not missing, f"demo catalogue lacks {missing}"
    return found
