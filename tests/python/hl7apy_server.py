"""hl7apy's MLLP server as the far end of the gateway's MLLP sender.

Usage: hl7apy_server.py PORT OUTDIR [ACK_CODE]

Every message received is checked with hl7apy's parser, stored as
OUTDIR/<MSH-10>.hl7 (a second copy as <MSH-10>.<n>.hl7), its MSH-10 appended
to OUTDIR/order.log (the order of arrival), and answered with an ACK carrying
ACK_CODE (default AA; AE comes with the text "rejected by the far end").
Prints "ready" once listening.
"""
import os
import sys
import threading

from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

port, outdir = int(sys.argv[1]), sys.argv[2]
code = sys.argv[3] if len(sys.argv) > 3 else "AA"
lock = threading.Lock()


def ack_for(msh_fields, ack_code, text=""):
    """msh_fields[n] is MSH-n (the field separator was inserted as MSH-1)."""
    f = lambda n: msh_fields[n] if n < len(msh_fields) else ""
    trigger = f(9).split("^")[1] if "^" in f(9) else ""
    msh = ["MSH", "^~\\&", f(5), f(6), f(3), f(4), "20260101000000", "",
           "ACK^" + trigger + "^ACK", "ACK" + f(10)[:17], "P", f(12)]
    body = "|".join(msh) + "\r" + "|".join(["MSA", ack_code, f(10), text]) + "\r"
    return "\x0b" + body + "\x1c\r"


class Store(AbstractHandler):
    def reply(self):
        raw = self.incoming_message
        # hl7apy must be able to read what the gateway sent.
        parsed = parse_message(raw, find_groups=False)
        control_id = parsed.msh.msh_10.value
        msh = raw.split("\r")[0].split("|")
        msh.insert(1, "|")
        with lock:
            path = os.path.join(outdir, control_id + ".hl7")
            n = 1
            while os.path.exists(path):
                path = os.path.join(outdir, "%s.%d.hl7" % (control_id, n))
                n += 1
            with open(path, "w", newline="") as f:
                f.write(raw)
            with open(os.path.join(outdir, "order.log"), "a") as f:
                f.write(control_id + "\n")
        return ack_for(msh, code, "rejected by the far end" if code == "AE" else "")


class Error(AbstractErrorHandler):
    def reply(self):
        msh = self.incoming_message.split("\r")[0].split("|")
        msh.insert(1, "|")
        return ack_for(msh, "AE", str(self.exc)[:80])


handlers = {key: (Store,) for key in ("ORU^R01", "ORU^R01^ORU_R01", "ADT^A01", "ADT^A01^ADT_A01", "ADT^A08", "ADT^A08^ADT_A01")}
handlers["ERR"] = (Error,)
server = MLLPServer("127.0.0.1", port, handlers)
print("ready", flush=True)
server.serve_forever()
