"""Validates acknowledgements with hl7apy's strict parser.

Usage: validate_ack.py FILE [FILE ...]   (each file holds one ACK, CR-separated)

Each file is read as bytes and decoded in the character set its MSH-18 names
(ASCII when empty), so an ACK in the wrong encoding fails here too. Prints
"ok FILE" or "invalid FILE: reason" per file; exits 1 if any is invalid.
"""
import sys

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

# HL7 table 0211 names -> Python codecs.
CHARSETS = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8"}


def decode(raw):
    msh = raw.split(b"\r", 1)[0]
    fields = msh.split(msh[3:4])
    msh18 = fields[17].decode("ascii") if len(fields) > 17 else ""
    name = msh18.split(msh[4:5].decode("ascii"))[0] if msh18 else ""
    return raw.decode(CHARSETS[name])


bad = 0
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        msg = parse_message(decode(raw), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        msg.validate()
        print("ok", path)
    except Exception as e:  # noqa: BLE001 - report every kind of failure
        bad += 1
        print("invalid %s: %s: %s" % (path, type(e).__name__, e))
sys.exit(1 if bad else 0)
