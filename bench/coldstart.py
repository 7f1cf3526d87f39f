"""Cold start: each handler module's import time in a fresh interpreter, and each function's
deployment package (its code + the ripple layer + both requirement sets) as SAM builds it.

Import times are measured with exactly the deployed requirements on the path, laid out as
Lambda lays them out (function code and its requirements, then the layer), installed for
this interpreter, with no site-packages (``python -S``) - the dev virtualenv holds more
(moto pulls in cryptography, which PyJWT then imports). Each is the median of several fresh
interpreters, interleaved across functions so that noise on the shared machine spreads
evenly. Package sizes come from ``pip --target`` for Lambda's platform (arm64, CPython
3.12, manylinux wheels only). Installs are cached in bench/.cache, so a re-run is fast;
without network (and no cache) both fall back to this virtualenv and say so.
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
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT
from bench.stats import percentile

_IMPORT = """
import importlib.util, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["handler"] = module
spec.loader.exec_module(module)
print(time.perf_counter() - t0)
"""
LAMBDA_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
LAMBDA_PYTHON = "3.12"
# Distributions the Lambda Python runtime already provides (boto3 and its dependencies).
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "dateutil",
    "urllib3",
    "six",
)
LAYER_DIR = REPO_ROOT / "layers" / "ripple"


def _template() -> dict[str, Any]:
    from ripple_local.cfn import load_template

    return dict(load_template(REPO_ROOT / "template.yaml"))


def _functions() -> dict[str, Path]:
    """Logical id -> CodeUri directory of every function in template.yaml."""
    from ripple_local.functions import function_names, function_setting

    template = _template()
    return {
        fid: REPO_ROOT / str(function_setting(template, fid, "CodeUri")) for fid in function_names(template)
    }


def _handler_file(function_id: str) -> Path:
    from ripple_local.functions import handler_path

    return handler_path(_template(), function_id, REPO_ROOT)[0]


def _requirements(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def _install(
    requirements: list[str], cache: Path, allow_download: bool, *, host: bool = False
) -> tuple[Path | None, str]:
    """pip --target, cached by the requirement list; returns (dir, mode). Lambda's platform by
    default, or this interpreter's (``host``), to import the very package set Lambda gets."""
    if not requirements:
        return None, "none"
    platform = ("host", sys.version) if host else (*LAMBDA_PLATFORMS, LAMBDA_PYTHON)
    key = hashlib.sha256("\n".join([*requirements, *platform]).encode()).hexdigest()[:16]
    target = cache.resolve() / key
    if (target / ".complete").is_file():
        return target, "pip (cached)"
    if not allow_download:
        return None, "unavailable (not cached; smoke mode does not download)"
    shutil.rmtree(target, ignore_errors=True)
    platforms = [arg for p in LAMBDA_PLATFORMS for arg in ("--platform", p)]
    lambda_args = [
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON,
        "--only-binary=:all:",
    ]
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(target), *([] if host else lambda_args), *requirements,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        shutil.rmtree(target, ignore_errors=True)
        return None, "offline (pip timed out)"
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed"
        return None, f"offline ({last})"
    (target / ".complete").touch()
    return target, "pip"


# ---------------------------------------------------------------------- import time
def _env(python_path: list[Path] | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    paths = python_path if python_path is not None else [LAYER_DIR]
    return {
        **keep,
        "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Ripple",
    }


def lambda_images(
    cache: Path, allow_download: bool, workdir: Path, variants: tuple[str, ...]
) -> tuple[dict[str, dict[str, list[Path]]] | None, str]:
    """Per variant and function, sys.path as Lambda builds it - function code and its
    requirements (/var/task), the layer (/opt/python), the runtime's boto3 (/var/runtime) -
    copied from host-platform installs of exactly the deployed requirements.

    Variant "source" has no bytecode, as ``sam build`` leaves a package (it unpacks wheels
    and copies sources; Lambda's read-only file system then compiles every module on every
    cold start); "compiled" is the same after ``python -m compileall``. The runtime's boto3
    is compiled in both. None when the requirements cannot be installed (offline, no cache).
    """
    layer_deps, mode = _install(
        _requirements(LAYER_DIR / "requirements.txt"), cache, allow_download, host=True
    )
    runtime, rmode = _install([f"boto3=={metadata.version('boto3')}"], cache, allow_download, host=True)
    if layer_deps is None or runtime is None:
        return None, mode if layer_deps is None else rmode
    if not (runtime / ".compiled").is_file():
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(runtime)], check=False)
        (runtime / ".compiled").touch()
    function_deps: dict[str, Path | None] = {}
    for fid, code_dir in _functions().items():
        deps, fmode = _install(_requirements(code_dir / "requirements.txt"), cache, allow_download, host=True)
        if fmode != "none" and deps is None:
            return None, fmode
        function_deps[fid] = deps
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".complete")
    images: dict[str, dict[str, list[Path]]] = {}
    for variant in variants:
        root = workdir / variant
        shutil.rmtree(root, ignore_errors=True)
        opt = root / "opt"
        shutil.copytree(LAYER_DIR / "ripple", opt / "ripple", ignore=ignore)
        shutil.copytree(layer_deps, opt / "deps", ignore=ignore)
        images[variant] = {}
        for fid, code_dir in _functions().items():
            task = root / f"task-{fid}"
            shutil.copytree(code_dir, task, ignore=ignore)
            deps = function_deps[fid]
            if deps is not None:
                shutil.copytree(deps, task, ignore=ignore, dirs_exist_ok=True)
            images[variant][fid] = [task, opt, opt / "deps", runtime]
        if variant == "compiled":
            subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(root)], check=False)
    return images, mode


def import_times(
    runs: int,
    cache: Path,
    allow_download: bool,
    workdir: Path,
    *,
    use_images: bool = True,
    breakdown: bool = True,
) -> dict[str, Any]:
    """Median / p90 / max import time (s) of each handler module, ``runs`` fresh interpreters
    per function and variant, interleaved."""
    functions = list(_functions())
    variants: tuple[str, ...] = ("source", "compiled")
    images, mode = (
        lambda_images(cache, allow_download, workdir, variants) if use_images else (None, "smoke run")
    )
    flags = ["-S"] if images is not None else []
    if images is None:  # offline, or the smoke run: this virtualenv, as it is
        variants = ("venv",)
    samples: dict[tuple[str, str], list[float]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    subprocess.run([sys.executable, *flags, "-c", "pass"], env=_env(), check=True)  # warm the page cache
    for _ in range(runs):
        for fid in functions:
            for variant in variants:
                path = images[variant][fid] if images else None
                handler = (path[0] / _handler_file(fid).name) if path else _handler_file(fid)
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, *flags, "-c", _IMPORT, str(handler)],
                    env=_env(path),
                    cwd=handler.parent,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                walls.setdefault((fid, variant), []).append(time.perf_counter() - started)
                samples.setdefault((fid, variant), []).append(float(done.stdout.strip().splitlines()[-1]))
    bare = []
    for _ in range(max(3, runs // 2)):
        started = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], env=_env(), check=True)
        bare.append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "runs": runs,
        "mode": f"deployed requirements ({mode}), python -S" if images else f"this virtualenv ({mode})",
        "variants": list(variants),
        "python": sys.version.split()[0],
        "interpreter_start_s": percentile(bare, 50),
        "functions": {},
    }
    for fid in functions:
        entry: dict[str, Any] = {}
        for variant in variants:
            data = samples[(fid, variant)]
            entry[variant] = {
                "import_p50_s": percentile(data, 50),
                "import_p90_s": percentile(data, 90),
                "import_max_s": max(data),
                "process_p50_s": percentile(walls[(fid, variant)], 50),
            }
        if breakdown:
            variant = variants[0]
            path = images[variant][fid] if images else None
            handler = (path[0] / _handler_file(fid).name) if path else _handler_file(fid)
            entry["top_imports"] = top_imports(handler, flags, _env(path))
        result["functions"][fid] = entry
    return result


def top_imports(
    handler: Path, flags: list[str], env: dict[str, str], count: int = 6
) -> list[tuple[str, float]]:
    """Where import time goes: self time (s) summed by top-level package (``-X importtime``),
    so botocore's own time counts as botocore's even when pynamodb imports it."""
    done = subprocess.run(
        [sys.executable, *flags, "-X", "importtime", "-c", _IMPORT, str(handler)],
        env=env,
        cwd=handler.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if match:
            package = match.group(3).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1e6
    return sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:count]


# ---------------------------------------------------------------------- package size
def _venv_files(requirements: list[str], prefix: str) -> list[tuple[Path, str]]:
    """Files of the installed distributions a requirement list resolves to (offline fallback)."""
    seen: dict[str, metadata.Distribution] = {}
    pending = [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in requirements]
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        pending += [
            re.split(r"[\[<>=!~; (]", r, maxsplit=1)[0] for r in dist.requires or [] if "extra ==" not in r
        ]
    files = []
    for dist in seen.values():
        for entry in dist.files or []:
            located = Path(str(dist.locate_file(entry)))
            if located.is_file() and located.suffix != ".pyc":
                files.append((located, f"{prefix}{entry}"))
    return files


def _files(root: Path) -> Iterable[Path]:
    for path in root.rglob("*"):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix != ".pyc"
            and path.name != ".complete"
        ):
            yield path


def _sizes(files: list[tuple[Path, str]]) -> tuple[int, int]:
    """(unzipped bytes, zipped bytes) of files stored under the given archive names."""
    unzipped = sum(p.stat().st_size for p, _ in files)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "package.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path, name in files:
                zf.write(path, name)
        return unzipped, archive.stat().st_size


def _group(files: list[tuple[Path, str]]) -> dict[str, int]:
    """Bytes per top-level entry of the archive (roughly: per distribution)."""
    groups: dict[str, int] = {}
    for path, name in files:
        top = name.removeprefix("python/").split("/")[0]
        top = re.sub(r"-[\w.]+\.(dist-info|data)$", "", top)
        groups[top] = groups.get(top, 0) + path.stat().st_size
    return dict(sorted(groups.items(), key=lambda kv: kv[1], reverse=True))


def _runtime_bytes(groups: dict[str, int]) -> int:
    return sum(v for k, v in groups.items() if k.lower().replace("_", "-") in RUNTIME_PROVIDED)


def package_sizes(cache: Path, allow_download: bool) -> dict[str, Any]:
    """Unzipped and zipped size of each function's code plus the layer, as deployed."""
    layer_reqs = _requirements(LAYER_DIR / "requirements.txt")
    layer_target, mode = _install(layer_reqs, cache, allow_download)
    layer_files = [(p, "python/" + str(p.relative_to(LAYER_DIR))) for p in _files(LAYER_DIR / "ripple")]
    if layer_target is not None:
        layer_files += [(p, "python/" + str(p.relative_to(layer_target))) for p in _files(layer_target)]
    else:
        mode = f"this virtualenv's wheels, not Lambda's platform ({mode})"
        layer_files += _venv_files(layer_reqs, "python/")
    layer_unzipped, layer_zipped = _sizes(layer_files)
    groups = _group(layer_files)
    result: dict[str, Any] = {
        "mode": mode,
        "platform": f"CPython {LAMBDA_PYTHON}, {', '.join(LAMBDA_PLATFORMS)}",
        "layer": {
            "requirements": layer_reqs,
            "unzipped": layer_unzipped,
            "zipped": layer_zipped,
            "largest": list(groups.items())[:6],
            "runtime_provided_unzipped": _runtime_bytes(groups),
        },
        "functions": {},
    }
    for fid, code_dir in _functions().items():
        reqs = _requirements(code_dir / "requirements.txt")
        target, fmode = _install(reqs, cache, allow_download)
        files = [(p, str(p.relative_to(code_dir))) for p in _files(code_dir) if p.name != "requirements.txt"]
        if target is not None:
            files += [(p, str(p.relative_to(target))) for p in _files(target)]
        elif reqs:
            files += _venv_files(reqs, "")
        unzipped, zipped = _sizes(files) if files else (0, 0)
        fgroups = _group(files)
        result["functions"][fid] = {
            "code_dir": str(code_dir.relative_to(REPO_ROOT)),
            "requirements": reqs,
            "mode": fmode,
            "unzipped": unzipped,
            "zipped": zipped,
            "largest": list(fgroups.items())[:5],
            "runtime_provided_unzipped": _runtime_bytes(fgroups),
            "total_unzipped": unzipped + layer_unzipped,
            "total_zipped": zipped + layer_zipped,
        }
    return result
