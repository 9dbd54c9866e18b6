#!/usr/bin/env python3
"""Validates CycloneDX JSON files against the 1.6 schema (cyclonedx-python-lib)."""
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
v = JsonStrictValidator(SchemaVersion.V1_6)
bad = 0
for f in sys.argv[1:]:
    err = v.validate_str(open(f).read())
    if err:
        print(f"INVALID {f}: {err}"); bad += 1
    else:
        print(f"valid {f}")
sys.exit(1 if bad else 0)
