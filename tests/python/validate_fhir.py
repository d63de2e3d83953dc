"""Validates FHIR R4 (4.0.1) Bundles with fhir.resources 6.4.0 (pydantic 1).

Usage: validate_fhir.py FILE...  Each file holds one Bundle as JSON. Prints
`ok FILE` per valid Bundle, or the validation errors, and exits 1 if any
Bundle is invalid.
"""
import json
import sys

from fhir.resources.bundle import Bundle


def main(paths):
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        try:
            Bundle.parse_obj(data)
            print(f"ok {path}")
        except Exception as e:  # pydantic.ValidationError and friends
            bad += 1
            print(f"invalid {path}:\n{e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
