"""The hub's side of the MQTT uplink, for the end-to-end tests: subscribes
to topic filters with QoS 1 on a persistent session (so the broker keeps
what arrives while it reconnects) and appends one JSON line per message to
a file: topic, retain flag, QoS, arrival time and the payload as hex. It reconnects by
itself whenever the broker goes away, and writes {"subscribed": true} each
time its subscriptions are in place."""

import argparse
import json
import sys
import time

import paho.mqtt.client as mqtt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--topic", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clean", action="store_true")
    a = p.parse_args()
    out = open(a.out, "a", buffering=1)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([(t, 1) for t in a.topic])

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        out.write(json.dumps({"subscribed": True}) + "\n")

    def on_message(client, userdata, msg):
        out.write(json.dumps({"topic": msg.topic, "retain": bool(msg.retain),
                              "qos": msg.qos, "t": time.time(),
                              "payload": msg.payload.hex()}) + "\n")

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.client_id,
                    clean_session=a.clean, protocol=mqtt.MQTTv311)
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.reconnect_delay_set(min_delay=1, max_delay=1)
    c.connect_async("127.0.0.1", a.port, keepalive=10)
    c.loop_forever(retry_first_connection=True)


if __name__ == "__main__":
    sys.exit(main())
