"""Build the Lambda deployment package (make lambda).

Runtime: python3.11 on x86_64. The zip holds twotier with the MySQL/MariaDB, PostgreSQL,
DynamoDB, Redis and AWS extras, as manylinux wheels for that platform (whatever Python builds
it), and nothing of the test or dev tools nor the bench harness. Handler:
twotier.aws_lambda.handler.

Every module travels compiled as well: the function's code is on a read-only file system,
where Python can write no bytecode cache, so without one each cold start would compile every
module it imports again (benchmarks/README.md, "Lambda cold start"). The bytecode is checked
by hash, never by the files' times (a zip's are not kept), and only a Python 3.11 can write
it: built with another, the zip goes without, and says so.

    python infra/build_lambda.py [OUT.zip]      (default dist/twotier-lambda.zip)
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

RUNTIME = "python3.11"
PYTHON_VERSION = "3.11"
PLATFORM = "manylinux2014_x86_64"
EXTRAS = "mysql,postgres,redis,aws,dynamodb"
ROOT = Path(__file__).resolve().parents[1]
# The sources extensions were compiled from, and type stubs: the runtime reads neither.
_SKIP_SUFFIXES = (".c", ".h", ".pyx", ".pxd", ".pyi")
# What the handler never runs: the bench harness (a command of the CLI), and psycopg2 (the
# PostgreSQL follower's replication client; a function never follows PostgreSQL's log).
_SKIP_PACKAGES = ("twotier/bench/", "psycopg2/", "psycopg2_binary.libs/")
# botocore's models of the services twotier calls (DynamoDB and its streams, Secrets
# Manager, S3) and of those credentials may come through; the other four hundred are a
# third of the package.
_BOTOCORE_SERVICES = frozenset(
    {"dynamodb", "dynamodbstreams", "secretsmanager", "s3", "sts", "sso", "sso-oidc"}
)


def _left_out(name: str) -> bool:
    """Whether the package's file ``name`` stays out of the zip."""
    if name.startswith(_SKIP_PACKAGES):
        return True
    parts = name.split("/")
    return (
        len(parts) > 3 and parts[:2] == ["botocore", "data"] and parts[2] not in _BOTOCORE_SERVICES
    )


def compiled() -> bool:
    """Whether this Python writes the runtime's bytecode."""
    return f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION


def build(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="twotier-lambda-") as work:
        wheels, package = Path(work) / "wheels", Path(work) / "package"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
        wheel = next(wheels.glob("twotier-*.whl"))
        subprocess.run(
            [
                *pip,
                "install",
                "--target",
                str(package),
                "--platform",
                PLATFORM,
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--only-binary=:all:",
                f"{wheel}[{EXTRAS}]",
            ],
            check=True,
        )
        shutil.rmtree(package / "bin", ignore_errors=True)  # console scripts: not on Lambda
        for stale in package.rglob("__pycache__"):  # pip's, in whatever mode it chose
            shutil.rmtree(stale)
        if compiled():
            compileall.compile_dir(
                package,
                quiet=2,
                workers=0,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in sorted(package.rglob("*")):
                if path.is_dir() or path.suffix in _SKIP_SUFFIXES:
                    continue
                name = path.relative_to(package).as_posix()
                if _left_out(name):
                    continue
                archive.write(path, name)
    return out.stat().st_size


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist" / "twotier-lambda.zip"
    size = build(out)
    with zipfile.ZipFile(out) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    print(
        f"{out}: {size / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped "
        f"(Lambda limits: 50 MB zipped upload, 250 MB unzipped); runtime {RUNTIME}, "
        f"x86_64, handler twotier.aws_lambda.handler"
    )
    if not compiled():
        print(
            f"no bytecode in the zip: Python {PYTHON_VERSION} writes the runtime's, this is "
            f"{sys.version_info.major}.{sys.version_info.minor}; each cold start compiles "
            "every module it imports"
        )


if __name__ == "__main__":
    main()
