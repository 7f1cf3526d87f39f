"""The deployment artefacts: ``sam validate --lint`` passes, ``sam build`` (no container)
builds the three functions and the layer for python3.12/arm64, and every built function
imports in a fresh python3.12 that sees only its own build directory, the built layer and
what the Lambda runtime provides (boto3) - so no dependency is missing from a
requirements.txt, and nothing from the dev environment leaks in.

aws-sam-cli's pins conflict with the project's, so it lives in its own virtualenv,
``.venv-sam`` (created here on first use: about 30 s, from PyPI). ``sam build`` needs a
python3.12 on PATH for the template's runtime; it is looked up on PATH and in pyenv.
Nothing here talks to AWS: SAM_CLI_TELEMETRY=0, and validate/build work offline.
"""

from __future__ import annotations

import glob
import json
import modulefinder
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import boto3
import pytest

from ripple_local.cfn import load_template
from ripple_local.functions import function_names
from tests.unit.test_cold_start import AT_COLD_START, NEVER, NEVER_ANYWHERE
from tests.unit.test_least_privilege import SAM_POLICY_TEMPLATES, Grant, granted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTIONS = function_names(TEMPLATE)
SAM_CLI_VERSION = "1.170.0"
SAM_VENV = ROOT / ".venv-sam"
RUNTIME = "python3.12"
AARCH64 = 183  # ELF e_machine of arm64 shared objects
# Never part of a deployment artefact.
DEV_ONLY = ("moto", "pytest", "cfnlint", "schemathesis", "hypothesis", "prometheus_client", "ruff", "mypy")
# SAM attaches these managed policies itself (logs, Tracing: Active, VpcConfig, stream reading).
BASE_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
}
STREAM_MANAGED = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600, **kw: Any) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _sam_works(sam: Path) -> bool:
    try:
        out = subprocess.run([str(sam), "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return False
    return out.returncode == 0 and SAM_CLI_VERSION in out.stdout


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """``.venv-sam/bin/sam`` at the pinned version, installed on first use."""
    sam = SAM_VENV / "bin" / "sam"
    if not _sam_works(sam):
        python = shutil.which("python3") or sys.executable
        if not (SAM_VENV / "bin" / "python").exists():
            _run([python, "-m", "venv", str(SAM_VENV)], timeout=120)
        _run(
            [str(SAM_VENV / "bin" / "pip"), "install", "--quiet", f"aws-sam-cli=={SAM_CLI_VERSION}"],
            timeout=600,
        )
    assert _sam_works(sam), f"{sam} is not aws-sam-cli {SAM_CLI_VERSION}"
    return sam


def _answers(python: str) -> bool:
    try:
        out = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.startswith("Python 3.12")


@pytest.fixture(scope="session")
def python312() -> Path:
    """A working python3.12 (a pyenv shim without a selected version does not count)."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for candidate in candidates:
        if candidate and _answers(candidate):
            return Path(candidate)
    pytest.skip(f"no python3.12 here: sam build needs one for Runtime {RUNTIME}")


@pytest.fixture(scope="session")
def sam_env(python312: Path) -> dict[str, str]:
    """Offline, telemetry off, a region for the linter, python3.12 first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAM_"))}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
        PATH=os.pathsep.join([str(python312.parent), env.get("PATH", "")]),
    )
    return env


@pytest.fixture(scope="module")
def build_dir(sam_cli: Path, sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sam build`` (no container, no cache: nothing is written into the repository)."""
    out = tmp_path_factory.mktemp("sam") / "build"
    _run(
        [str(sam_cli), "build", "--no-cached", "--build-dir", str(out), "--template-file", "template.yaml"],
        env=sam_env,
        cwd=ROOT,
    )
    return out


@pytest.fixture(scope="module")
def lambda_runtime(python312: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Lambda runtime adds to a function: boto3 (on the path as on Lambda; no function
    imports it: they use botocore, which the layer carries as PynamoDB's dependency)."""
    target = tmp_path_factory.mktemp("lambda-runtime")
    _run(
        [
            str(python312),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            f"boto3=={boto3.__version__}",
        ],
        timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def host_builds(build_dir: Path, python312: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's packages that carry native code (built for arm64, which this machine may not
    run: ``test_native_code_is_built_for_arm64``), each at the same version built for this
    machine, alone in a directory the import test puts first on the path. Whatever else a
    function imports still comes from its artefacts."""
    built = load_template(build_dir / "template.yaml")["Resources"]
    layer = build_dir / built["RippleLayer"]["Properties"]["ContentUri"] / "python"
    target = tmp_path_factory.mktemp("host-builds")
    native = []
    for info in layer.glob("*.dist-info"):
        files = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]
        if any(name.endswith(".so") for name in files):
            fields = HeaderParser().parsestr(
                (info / "METADATA").read_text()
            )  # the headers, not the description
            native.append(f"{fields['Name']}=={fields['Version']}")
    if native:
        pip = [str(python312), "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
        _run([*pip, *native], timeout=300)
    return target


def _placeholder_environment(function_id: str) -> dict[str, str]:
    """The function's template environment with placeholders for what only a deployment
    knows (table names, the Redis endpoint) and parameter defaults for the rest."""
    parameters = TEMPLATE.get("Parameters") or {}
    variables = dict((TEMPLATE["Globals"]["Function"].get("Environment") or {}).get("Variables") or {})
    own = TEMPLATE["Resources"][function_id]["Properties"].get("Environment") or {}
    variables.update(own.get("Variables") or {})
    env: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in parameters:
            env[name] = str(parameters[value["Ref"]].get("Default", ""))
        elif isinstance(value, dict):
            env[name] = "6379" if name.endswith("_PORT") else f"placeholder-{name.lower()}"
        else:
            env[name] = str(value)
    return env


_IMPORT_PROBE = r"""
import importlib, json, sys, sysconfig
module = importlib.import_module(sys.argv[1])
handler = getattr(module, sys.argv[2])
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
print(json.dumps({"handler": type(handler).__name__, "callable": callable(handler), "files": files,
                  "stdlib": [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]],
                  "modules": sorted(sys.modules)}))
"""


# ------------------------------------------------------------------ validate
def test_sam_validate_lint_passes(sam_cli: Path, sam_env: dict[str, str]) -> None:
    out = _run(
        [str(sam_cli), "validate", "--lint", "--template-file", "template.yaml"], env=sam_env, cwd=ROOT
    )
    assert "is a valid SAM Template" in out


# ------------------------------------------------------------------ build
def test_sam_build_builds_every_function_and_the_layer(build_dir: Path) -> None:
    built = load_template(build_dir / "template.yaml")["Resources"]
    for function_id in FUNCTIONS:
        code = build_dir / built[function_id]["Properties"]["CodeUri"]
        assert (code / "app.py").is_file(), function_id
        assert not (code / "ripple").exists(), f"{function_id} bundles ripple: it belongs to the layer"
    layer = build_dir / built["RippleLayer"]["Properties"]["ContentUri"] / "python"
    for package in ("ripple", "pynamodb", "redis", "jwt", "aws_lambda_powertools", "aws_xray_sdk"):
        assert (layer / package).is_dir(), f"the layer lacks {package}"
    assert (build_dir / built["ApiFunction"]["Properties"]["CodeUri"] / "chalice").is_dir()


def test_the_artefacts_hold_only_what_the_functions_import(build_dir: Path) -> None:
    """Production code is what production runs: every module of the built ``ripple`` package
    is imported by some function's handler (statically, lazy imports included), and nothing
    operator-only or local-only (``ripple_local``: convergence checks and their whole-table
    scans, the Prometheus bridge, the stack itself) is in any artefact."""
    built = load_template(build_dir / "template.yaml")["Resources"]
    layer = build_dir / built["RippleLayer"]["Properties"]["ContentUri"] / "python"
    shipped = {
        ".".join(path.relative_to(layer).with_suffix("").parts).removesuffix(".__init__")
        for path in (layer / "ripple").rglob("*.py")
    }
    imported: set[str] = set()
    for function_id in FUNCTIONS:
        code = build_dir / built[function_id]["Properties"]["CodeUri"]
        finder = modulefinder.ModuleFinder(path=[str(code), str(layer)])
        finder.run_script(str(code / "app.py"))
        imported |= {name for name in finder.modules if name.partition(".")[0] == "ripple"}
    assert shipped - imported == set(), "deployed but never imported by a function"
    local_only = sorted(str(p.relative_to(build_dir)) for p in build_dir.rglob("ripple_local*"))
    assert not local_only, local_only


def test_the_api_ships_chalice_alone_and_everything_ships_bytecode(build_dir: Path) -> None:
    """Issue 11, cold start: the API function carries Chalice's runtime - chalice/__init__.py
    and chalice/app.py, what Chalice's own packager deploys - without its command-line
    toolchain (neither its dependencies nor its own cli/, deploy/ and the rest), and every
    module of the API and the layer is precompiled for CPython 3.12 with unchecked-hash .pyc
    files (valid whatever the file times are after the zip round trip)."""
    built = load_template(build_dir / "template.yaml")["Resources"]
    api = build_dir / built["ApiFunction"]["Properties"]["CodeUri"]
    top_level = {p.name for p in api.iterdir() if not p.name.endswith(".dist-info")}
    assert top_level == {"app.py", "openapi.json", "chalice", "__pycache__"}, top_level
    chalice = {p.name for p in (api / "chalice").iterdir()}
    assert chalice == {"__init__.py", "app.py", "__pycache__"}, chalice
    size = sum(p.stat().st_size for p in api.rglob("*") if p.is_file())
    assert size < 1_000_000, f"the built API is {size / 1e6:.1f} MB (about 0.3 MB: app, spec, chalice.app)"
    layer = build_dir / built["RippleLayer"]["Properties"]["ContentUri"] / "python"
    for root in (api, layer):
        sources = [p for p in root.rglob("*.py") if "dist-info" not in str(p)]
        assert sources
        for source in sources:
            compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
            assert compiled.is_file(), source
            flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
            assert flags == 0b01, f"{compiled}: not an unchecked-hash pyc (flags {flags})"


def test_no_dev_dependency_leaks_into_the_artefacts(build_dir: Path) -> None:
    leaked = sorted(
        str(p.relative_to(build_dir)) for name in DEV_ONLY for p in build_dir.glob(f"*/**/{name}")
    )
    assert not leaked, leaked


def test_native_code_is_built_for_arm64(build_dir: Path) -> None:
    """Architectures: [arm64]: every shared object must be aarch64 (an x86_64 wheel would
    import-fail on Lambda). The import test runs this machine's builds of them (host_builds)."""
    shared = list(build_dir.rglob("*.so"))
    wrong = []
    for path in shared:
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", path
        if int.from_bytes(header[18:20], "little") != AARCH64:
            wrong.append(str(path.relative_to(build_dir)))
    assert not wrong, f"not arm64: {wrong}"


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_built_function_imports_with_only_its_dependencies_and_the_layer(
    function_id: str, build_dir: Path, lambda_runtime: Path, python312: Path, host_builds: Path
) -> None:
    built = load_template(build_dir / "template.yaml")["Resources"]
    code = build_dir / built[function_id]["Properties"]["CodeUri"]
    layer = build_dir / built["RippleLayer"]["Properties"]["ContentUri"] / "python"
    module, _, attribute = built[function_id]["Properties"]["Handler"].rpartition(".")
    env = {
        "PATH": "/usr/bin:/bin",
        # Lambda's order: the function, then the layer, then the runtime's own packages; first,
        # this machine's builds of the layer's native packages (see host_builds).
        "PYTHONPATH": os.pathsep.join([str(host_builds), str(code), str(layer), str(lambda_runtime)]),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"ripple-{function_id}",
        # Set on Lambda: without it the X-Ray SDK takes its off-Lambda path, which builds a
        # botocore client for sampling rules at import.
        "LAMBDA_TASK_ROOT": str(code),
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        **_placeholder_environment(function_id),
    }
    # -S: not even the interpreter's own site-packages; only PYTHONPATH and the stdlib.
    result = subprocess.run(
        [str(python312), "-S", "-c", _IMPORT_PROBE, module, attribute],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{function_id} does not import:\n{result.stderr[-4000:]}"
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["callable"], f"{function_id}: {attribute} is a {probe['handler']}, not callable"
    allowed = [str(host_builds), str(code), str(layer), str(lambda_runtime), *probe["stdlib"]]
    outside = [f for f in probe["files"] if not any(f.startswith(root) for root in allowed)]
    assert not outside, f"{function_id} imported from outside its artefacts: {outside}"
    # Issue 11: at cold start, what the function's invocations use and nothing else
    # (unit/test_cold_start.py checks the same from source, with the tracer active).
    modules = set(probe["modules"])
    assert AT_COLD_START[function_id] <= modules, "deferred to the first request"
    never = NEVER[function_id] | NEVER_ANYWHERE
    unused = sorted(n for n in never if any(m == n or m.startswith(f"{n}.") for m in modules))
    assert not unused, f"{function_id} imports what it never runs: {unused}"


# ------------------------------------------------------------------ policies as SAM expands them
_SAM_PROBE = r"""
import json, os, sys
import samtranslator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

data = os.path.join(os.path.dirname(samtranslator.__file__), "policy_templates_data", "policy_templates.json")
templates = json.load(open(data))["Templates"]
template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():  # transform wants S3 locations, not folders
    props = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://bucket/" + props[key]

class NoManagedPolicies:
    def load(self):
        return {}

out = transform(template, {}, NoManagedPolicies())
roles = {lid: r["Properties"] for lid, r in out["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
templates = {n: templates[n]["Definition"] for n in sys.argv[2:]}
print(json.dumps({"templates": templates, "roles": roles, "resources": out["Resources"]}))
"""


@pytest.fixture(scope="module")
def sam_expansion(sam_cli: Path, sam_env: dict[str, str]) -> dict[str, Any]:
    """samtranslator's view: the policy templates' definitions, the generated IAM roles and
    every resource of the transformed template."""
    out = _run(
        [
            str(sam_cli.parent / "python"),
            "-c",
            _SAM_PROBE,
            str(ROOT / "template.yaml"),
            *SAM_POLICY_TEMPLATES,
        ],
        env=sam_env,
    )
    expansion: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return expansion


def test_the_unit_tests_copy_of_the_policy_templates_is_sams(sam_expansion: dict[str, Any]) -> None:
    for name, actions in SAM_POLICY_TEMPLATES.items():
        statements = sam_expansion["templates"][name]["Statement"]
        assert [a for s in statements for a in s["Action"]] == list(actions), name


def _resource_logical_id(resource: Any) -> str:
    """A generated policy's resource as test_least_privilege names it."""
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str):  # "${T.Arn}/index/name"
        table, index = resource["Fn::Sub"][2:].split(".Arn}/index/")
        return f"{table}/index/{index}"
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text, variables = resource["Fn::Sub"]
        ((_, reference),) = variables.items()
        (kind, target) = next(iter(reference.items()))
        logical = (
            target if kind == "Ref" else (target[0] if isinstance(target, list) else target.split(".")[0])
        )
        return f"{logical}/index/*" if text.endswith("/index/*") else str(logical)
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    if isinstance(resource, dict) and "Ref" in resource:
        return str(resource["Ref"])
    raise AssertionError(f"unexpected resource {resource!r}")


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_generated_role_grants_exactly_the_template_policies(
    function_id: str, sam_expansion: dict[str, Any]
) -> None:
    role = sam_expansion["roles"][f"{function_id}Role"]
    generated: set[Grant] = set()
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            generated |= {Grant(a, _resource_logical_id(r)) for a in actions for r in resources}
    assert generated == granted(TEMPLATE, function_id)
    events = TEMPLATE["Resources"][function_id]["Properties"].get("Events") or {}
    reads_streams = any(e["Type"] == "DynamoDB" for e in events.values())
    assert set(role["ManagedPolicyArns"]) == BASE_MANAGED | ({STREAM_MANAGED} if reads_streams else set())


def _references(value: Any) -> set[str]:
    """Logical ids a property value names: Ref, Fn::GetAtt and Fn::Sub's ${Id} / ${Id.Attr}."""
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return {value["Ref"]}
    if set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        return {target[0] if isinstance(target, list) else str(target).split(".")[0]}
    if set(value) == {"Fn::Sub"}:
        text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        named = {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)} - set(variables)
        return named | _references(list(variables.values()))
    return set().union(*(_references(item) for item in value.values())) if value else set()


def test_what_refers_to_a_conditional_api_shares_its_condition(sam_expansion: dict[str, Any]) -> None:
    """CloudFormation rejects a template whose resource Refs one a condition removed. SAM copies
    an API's Condition to the stage and deployment it makes, and a function's (never an
    event's) to the permissions it makes for events: the APIs' permissions must be the
    template's own, with the API's condition (template.yaml, "the front door")."""
    resources: dict[str, Any] = sam_expansion["resources"]
    conditional = {lid: r["Condition"] for lid, r in resources.items() if "Condition" in r}
    expected_kinds = {
        "UseRestApi": {"AWS::ApiGateway::RestApi", "AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage"},
        "UseHttpApi": {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage"},
    }
    for condition, kinds in expected_kinds.items():
        present = {resources[lid]["Type"] for lid, c in conditional.items() if c == condition}
        assert present == kinds | {"AWS::Lambda::Permission"}, condition
    for logical_id, resource in resources.items():
        for target in _references(resource.get("Properties")) & set(conditional):
            assert resource.get("Condition") == conditional[target], (logical_id, target)


@pytest.fixture(autouse=True, scope="module")
def _no_sam_cache_in_the_repository() -> Iterator[None]:
    existed = (ROOT / ".aws-sam").exists()
    yield
    if not existed:
        assert not (ROOT / ".aws-sam").exists(), "sam wrote .aws-sam into the repository"
