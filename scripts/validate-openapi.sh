#!/usr/bin/env bash
# Validates docs/openapi.json (the snapshot the tests keep equal to the served document)
# against the OpenAPI 3.1 schema, with openapi-spec-validator from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import openapi_spec_validator" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator
fi
python3 - <<'PY'
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
spec, _ = read_from_filename("docs/openapi.json")
validate(spec)
print(f"docs/openapi.json is a valid OpenAPI {spec['openapi']} document ({len(spec['paths'])} paths)")
PY
