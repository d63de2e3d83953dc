"""python-hl7's asyncio MLLP client: several messages on one connection.

Usage: hl7_async_client.py PORT FILE [FILE ...]

Sends every message (one file each) on a single connection, waiting for each
ACK before the next, and prints each ACK on its own line with CR shown as \\r.
"""
import asyncio
import sys

import hl7
from hl7.mllp import open_hl7_connection


async def main(port, files):
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    for path in files:
        with open(path, newline="") as f:
            text = f.read().replace("\r\n", "\r").replace("\n", "\r").strip("\r") + "\r"
        writer.writemessage(hl7.parse(text))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), timeout=10)
        print(str(ack).replace("\r", "\\r"), flush=True)
    writer.close()
    await writer.wait_closed()


asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
