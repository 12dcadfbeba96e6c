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
# Compiled caches and package metadata the runtime never reads.
_SKIP_SUFFIXES = (".pyc",)
_SKIP_PARTS = ("__pycache__",)
# The bench harness (load generators, reports): a command of the CLI, never the handler's.
_SKIP_PACKAGES = ("twotier/bench/",)


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
                if name.startswith(_SKIP_PACKAGES):
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
