"""An ASTM analyzer for the end-to-end tests, built on python-astm 0.5.0.

    astm_analyzer.py send PORT [--chunk-size N] [--bulk] FILE...
                                         send each file (one H..L message,
                                         records one per line) with
                                         python-astm's client, one connection;
                                         --chunk-size splits frames longer
                                         than N bytes with ETB, --bulk sends
                                         each message's records in one frame
                                         (python-astm's bulk mode)
                                         exits 1 unless the host acknowledged
                                         the last frame
    astm_analyzer.py query PORT SPECIMEN send a host query (H, Q, L), then
                                         receive the host's answer session and
                                         print its records as JSON

`send` is python-astm's own client end to end. Its client cannot receive
(it refuses an ENQ), so `query` speaks the handshake over a plain socket and
uses python-astm's codec for every frame both ways: our frames must decode
and pass its checksum check. Every wait has a timeout.
"""
import json
import signal
import socket
import sys

from astm import codec
from astm.client import Client, DEFAULT_RECORDS_FLOW_MAP
from astm.constants import ACK, ENQ, EOT, NAK, STX

ENCODING = "latin-1"


def read_records(path):
    with open(path, "rb") as f:
        text = f.read().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return [codec.decode_record(line, ENCODING) for line in text.split(b"\n") if line.strip()]


def send(port, args):
    chunk_size = None
    bulk = False
    files = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--chunk-size":
            chunk_size = int(rest.pop(0))
        elif arg == "--bulk":
            bulk = True
        else:
            files.append(arg)
    messages = [read_records(p) for p in files]

    # The last frame's ACK is the host's word that the message is stored;
    # python-astm's run() returns the same when the host goes away first,
    # so whether the emitter got that ACK is what the exit status says.
    acknowledged = [False]

    def emitter():
        ok = None
        for records in messages:
            for record in records:
                ok = yield record
                if ok is False:
                    sys.stderr.write("record %r was rejected\n" % record[0])
        acknowledged[0] = ok is not False

    flow = dict(DEFAULT_RECORDS_FLOW_MAP)
    client = Client(
        emitter,
        "127.0.0.1",
        port,
        encoding=ENCODING,
        timeout=15,
        flow_map=flow,
        chunk_size=chunk_size,
        bulk_mode=bulk,
    )
    client.run(timeout=0.2)
    if not acknowledged[0]:
        sys.stderr.write("the host did not acknowledge the last frame\n")
        sys.exit(1)
    print("sent %d messages" % len(messages))


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the host closed the connection")
        data += chunk
    return data


def read_frame(sock):
    frame = b""
    while not frame.endswith(b"\r\n"):
        frame += read_exact(sock, 1)
    return STX + frame


def query(port, specimen):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    records = [
        ["H", [[None], [None, "&"]], None, None, ["ANALYZER", "1.0"]],
        ["Q", "1", [None, specimen], None, [None, None, None, "ALL"]],
        ["L", "1", "N"],
    ]
    sock.sendall(ENQ)
    assert read_exact(sock, 1) == ACK, "ENQ not accepted"
    for frame in codec.encode(records, ENCODING):
        sock.sendall(frame)
        answer = read_exact(sock, 1)
        assert answer == ACK, "frame answered %r" % answer
    sock.sendall(EOT)
    # The answer comes in a new session opened by the host.
    first = read_exact(sock, 1)
    assert first == ENQ, "expected ENQ, got %r" % first
    sock.sendall(ACK)
    answer = []
    while True:
        b = read_exact(sock, 1)
        if b == EOT:
            break
        assert b == STX, "expected STX, got %r" % b
        frame = read_frame(sock)
        # decode checks the checksum and the frame layout.
        seq, recs, _ = codec.decode_message(frame, ENCODING)
        answer.extend(recs)
        sock.sendall(ACK)
    sock.close()
    print(json.dumps(answer))


def main():
    signal.alarm(60)
    if len(sys.argv) >= 4 and sys.argv[1] == "send":
        send(int(sys.argv[2]), sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "query":
        query(int(sys.argv[2]), sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
