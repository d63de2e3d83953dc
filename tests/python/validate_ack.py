"""Validates acknowledgements with hl7apy's strict parser.

Usage: validate_ack.py FILE [FILE ...]   (each file holds one ACK, CR-separated)

Prints "ok FILE" or "invalid FILE: reason" per file; exits 1 if any is invalid.
"""
import sys

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

bad = 0
for path in sys.argv[1:]:
    with open(path, newline="") as f:
        text = f.read()
    try:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        msg.validate()
        print("ok", path)
    except Exception as e:  # noqa: BLE001 - report every kind of failure
        bad += 1
        print("invalid %s: %s: %s" % (path, type(e).__name__, e))
sys.exit(1 if bad else 0)
