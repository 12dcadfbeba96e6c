"""Build the Lambda deployment package (make lambda).

Runtime: python3.11 on x86_64. The zip holds twotier with the MySQL/MariaDB, PostgreSQL,
DynamoDB, Redis and AWS extras, as manylinux wheels for that platform (whatever Python builds
it), and nothing of the test or dev tools nor the bench harness. Handler:
twotier.aws_lambda.handler.

    python infra/build_lambda.py [OUT.zip]      (default dist/twotier-lambda.zip)
"""

from __future__ import annotations

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
# Compiled caches, and the sources extensions were compiled from: the runtime reads neither.
_SKIP_SUFFIXES = (".pyc", ".c", ".h", ".pyx", ".pxd", ".pyi")
_SKIP_PARTS = ("__pycache__",)
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
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in sorted(package.rglob("*")):
                if path.is_dir() or path.suffix in _SKIP_SUFFIXES:
                    continue
                if any(part in _SKIP_PARTS for part in path.parts):
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


if __name__ == "__main__":
    main()
