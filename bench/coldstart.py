"""Cold start: each handler module's import time in a fresh interpreter, and each function's
deployment package (its code + the ripple layer + both requirement sets) as SAM builds it.

Import times are measured with exactly the deployed requirements on the path, laid out as
Lambda lays them out (function code and its requirements, then the layer), installed for this
interpreter, with no site-packages (``python -S``) - the dev virtualenv holds more (moto pulls
in cryptography, which PyJWT then imports). Each is the median of several fresh interpreters,
interleaved across functions so that noise on the shared machine spreads evenly. Package
sizes come from ``pip --target`` for Lambda's platform (arm64, CPython 3.12, manylinux wheels
only). Installs are cached in bench/.cache, so a re-run is fast; without network (and no
cache) imports fall back to this virtualenv and package sizes to the code alone, and say so.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT, summary
from ripple_local.cfn import load_template
from ripple_local.functions import function_names, function_setting, handler_path

_IMPORT = """import importlib.util, sys, time
t0 = time.perf_counter(); spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
sys.modules["handler"] = module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
print(time.perf_counter() - t0)"""
LAMBDA_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
LAMBDA_PYTHON = "3.12"
# Distributions the Lambda Python runtime already provides (boto3 and its dependencies).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "dateutil",
                    "urllib3", "six")  # fmt: skip
LAYER_DIR = REPO_ROOT / "layers" / "ripple"
CHALICE_RUNTIME = ("chalice/__init__.py", "chalice/app.py")  # all of chalice the API ships
TEMPLATE = load_template(REPO_ROOT / "template.yaml")
# Logical id -> CodeUri directory of every function in template.yaml.
FUNCTIONS = {f: REPO_ROOT / str(function_setting(TEMPLATE, f, "CodeUri")) for f in function_names(TEMPLATE)}


def _requirements(directory: Path, function_id: str | None = None) -> list[str]:
    """The requirements as pip installs them for the artefact: a function built by its
    Makefile (``BuildMethod: makefile``; functions/api/Makefile) takes them without deps."""
    path = directory / "requirements.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    requirements = [r for r in (line.split("#", 1)[0].strip() for line in lines) if r]
    metadata = TEMPLATE["Resources"].get(function_id or "", {}).get("Metadata", {})
    return (
        [*requirements, "--no-deps"]
        if requirements and metadata.get("BuildMethod") == "makefile"
        else requirements
    )


def _install(
    requirements: list[str], cache: Path, download: bool, host: bool = False
) -> tuple[Path | None, str]:
    """pip --target, cached by the requirement list; returns (dir, mode). Lambda's platform by
    default, or this interpreter's (``host``), to import the very package set Lambda gets."""
    if not requirements:
        return None, "none"
    platform = ("host", sys.version) if host else (*LAMBDA_PLATFORMS, LAMBDA_PYTHON)
    target = cache.resolve() / hashlib.sha256("\n".join([*requirements, *platform]).encode()).hexdigest()[:16]
    if (target / ".complete").is_file():
        return target, "pip (cached)"
    if not download:
        return None, "unavailable (not cached; smoke mode does not download)"
    shutil.rmtree(target, ignore_errors=True)
    platforms = [a for p in LAMBDA_PLATFORMS for a in ("--platform", p)]
    wheels = [*platforms, "--implementation", "cp", "--python-version", LAMBDA_PYTHON, "--only-binary=:all:"]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    try:
        command = [*pip, "--target", str(target), *([] if host else wheels), *requirements]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess([], 1, "", "pip timed out")
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return None, f"offline ({(done.stderr.strip().splitlines() or ['pip failed'])[-1]})"
    (target / ".complete").touch()
    return target, "pip"


def _compile(path: Path) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(path)], check=False)


def lambda_images(cache: Path, download: bool, workdir: Path) -> tuple[dict[str, Any] | None, str]:
    """Per variant and function, sys.path as Lambda builds it - function code and its requirements
    (/var/task), the layer (/opt/python), the runtime's boto3 (/var/runtime) - copied from
    host-platform installs of exactly the deployed requirements.

    Variant "source" has no bytecode, as ``sam build`` leaves a package (it unpacks wheels and
    copies sources; Lambda's read-only file system then compiles every module on every cold
    start); "compiled" is the same after ``python -m compileall``. The runtime's boto3 is
    compiled in both. None when the requirements cannot be installed (offline, no cache)."""
    layer_deps, mode = _install(_requirements(LAYER_DIR), cache, download, host=True)
    runtime, runtime_mode = _install([f"boto3=={metadata.version('boto3')}"], cache, download, host=True)
    if layer_deps is None or runtime is None:
        return None, mode if layer_deps is None else runtime_mode
    if not (runtime / ".compiled").is_file():
        _compile(runtime)
        (runtime / ".compiled").touch()
    deps = {
        fid: _install(_requirements(code, fid), cache, download, host=True) for fid, code in FUNCTIONS.items()
    }
    if failed := [m for d, m in deps.values() if d is None and m != "none"]:
        return None, failed[0]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".complete")
    images: dict[str, dict[str, list[Path]]] = {}
    for variant in ("source", "compiled"):
        root, images[variant] = workdir / variant, {}
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(LAYER_DIR / "ripple", root / "opt" / "ripple", ignore=ignore)
        shutil.copytree(layer_deps, root / "opt" / "deps", ignore=ignore)
        for fid, code_dir in FUNCTIONS.items():
            task = root / f"task-{fid}"
            shutil.copytree(code_dir, task, ignore=ignore)
            if (function_deps := deps[fid][0]) is not None:
                shutil.copytree(function_deps, task, ignore=ignore, dirs_exist_ok=True)
            images[variant][fid] = [task, root / "opt", root / "opt" / "deps", runtime]
        if variant == "compiled":
            _compile(root)
    return images, mode


def _env(path: list[Path] | None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    python_path = [str(p) for p in path or [LAYER_DIR]]
    # LAMBDA_TASK_ROOT as on Lambda: Powertools' Tracer then patches the AWS SDK, and X-Ray skips
    # what it does off Lambda at import (a botocore client for its sampling rules).
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "LAMBDA_TASK_ROOT": python_path[0],
           "PYTHONPATH": os.pathsep.join(python_path), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    return {**keep, **env, "POWERTOOLS_METRICS_NAMESPACE": "Ripple"}


def import_times(
    runs: int, cache: Path, download: bool, workdir: Path, use_images: bool = True, breakdown: bool = True
) -> dict[str, Any]:
    """Median import time (s) of each handler module, ``runs`` fresh interpreters per function and
    variant, interleaved; and where it goes (``-X importtime`` self time by top-level package)."""
    images, mode = lambda_images(cache, download, workdir) if use_images else (None, "smoke run")
    flags = ["-S"] if images else []
    variants = list(images) if images else ["venv"]  # offline, or the smoke run: this virtualenv

    def run(fid: str, variant: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
        path = images[variant][fid] if images else None
        handler = handler_path(TEMPLATE, fid, REPO_ROOT)[0]
        handler = path[0] / handler.name if path else handler
        command = [sys.executable, *flags, *extra, "-c", _IMPORT, str(handler)]
        started = time.perf_counter()
        done = subprocess.run(command, env=_env(path), cwd=handler.parent, capture_output=True, text=True)
        done.check_returncode()
        return done, time.perf_counter() - started

    def interpreter() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], env=_env(None), check=True)
        return time.perf_counter() - started

    interpreter()  # warm the page cache
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for fid in FUNCTIONS:
            for variant in variants:
                done, wall = run(fid, variant)
                samples.setdefault((fid, variant), []).append((float(done.stdout.split()[-1]), wall))
    functions: dict[str, Any] = {}
    for fid in FUNCTIONS:
        functions[fid] = {}
        for variant in variants:
            imports, walls = (summary(s[i] for s in samples[(fid, variant)]) for i in (0, 1))
            stats = {f"import_{k}_s": imports[k] for k in ("p50", "p90", "max")}
            functions[fid][variant] = {**stats, "process_p50_s": walls["p50"]}
        if breakdown:
            totals: dict[str, float] = {}
            for line in run(fid, variants[-1], "-X", "importtime")[0].stderr.splitlines():  # as deployed
                if match := re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line):
                    package = match.group(3).split(".")[0]
                    totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1e6
            functions[fid]["top_imports"] = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:6]
    return {
        "runs": runs,
        "mode": f"deployed requirements ({mode}), python -S" if images else f"this virtualenv ({mode})",
        "variants": variants,
        "python": sys.version.split()[0],
        "interpreter_start_s": summary([interpreter() for _ in range(max(3, runs // 2))])["p50"],
        "functions": functions,
    }


def _package(files: list[tuple[Path, str]]) -> dict[str, Any]:
    """Unzipped and zipped bytes of files stored under the given archive names, and the bytes per
    top-level entry (roughly: per distribution)."""
    groups: dict[str, int] = {}
    for path, name in files:
        top = re.sub(r"-[\w.]+\.(dist-info|data)$", "", name.removeprefix("python/").split("/")[0])
        groups[top] = groups.get(top, 0) + path.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(Path(tmp) / "package.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path, name in files:
                zf.write(path, name)
        zipped = (Path(tmp) / "package.zip").stat().st_size
    runtime = sum(v for k, v in groups.items() if k.lower().replace("_", "-") in RUNTIME_PROVIDED)
    largest = sorted(groups.items(), key=lambda kv: kv[1], reverse=True)
    return {"unzipped": sum(groups.values()), "zipped": zipped, "largest": largest,
            "runtime_provided_unzipped": runtime}  # fmt: skip


def _files(root: Path | None, prefix: str = "") -> list[tuple[Path, str]]:
    """(file, name in the archive) of a directory tree, without bytecode and requirements.txt; of
    chalice, what functions/api/Makefile keeps (its runtime, chalice/__init__.py and app.py)."""
    names = [(p, p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()] if root else []
    skip = {"__pycache__", "requirements.txt", ".complete", "Makefile", "bin"}
    names = [(p, n) for p, n in names if n.parts[0] != "chalice" or str(n) in CHALICE_RUNTIME]
    return [(p, prefix + str(name)) for p, name in names if p.suffix != ".pyc" and not skip & set(name.parts)]


def package_sizes(cache: Path, allow_download: bool) -> dict[str, Any]:
    """Unzipped and zipped size of each function's code plus the layer, as deployed."""
    layer_reqs = _requirements(LAYER_DIR)
    layer_deps, mode = _install(layer_reqs, cache, allow_download)
    layer = _package(_files(LAYER_DIR / "ripple", "python/ripple/") + _files(layer_deps, "python/"))
    layer.update(requirements=layer_reqs, largest=layer["largest"][:6])
    result: dict[str, Any] = {
        "mode": mode if layer_deps else f"the code alone, no dependencies ({mode})",
        "platform": f"CPython {LAMBDA_PYTHON}, {', '.join(LAMBDA_PLATFORMS)}",
        "layer": layer,
        "functions": {},
    }
    for fid, code_dir in FUNCTIONS.items():
        deps, fmode = _install(_requirements(code_dir, fid), cache, allow_download)
        package = _package(_files(code_dir) + _files(deps))
        result["functions"][fid] = package | {
            "code_dir": str(code_dir.relative_to(REPO_ROOT)), "requirements": _requirements(code_dir),
            "mode": fmode, "largest": package["largest"][:5],
            "total_unzipped": package["unzipped"] + layer["unzipped"],
            "total_zipped": package["zipped"] + layer["zipped"],
        }  # fmt: skip
    return result
