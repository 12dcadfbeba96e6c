"""Tests of the CDK app; it lives in infra/cdk, outside the package, so put it on the path."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "infra" / "cdk"))
# The machine's Node.js is past end-of-life for jsii: say so once, not on every synthesis.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
