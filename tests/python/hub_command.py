"""The hub giving one command, for the end-to-end tests: publishes a
payload (given as hex) on a topic with QoS 1 and exits once the broker has
acknowledged it."""

import argparse
import sys

import paho.mqtt.client as mqtt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--payload-hex", required=True)
    a = p.parse_args()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", a.port, keepalive=10)
    c.loop_start()
    info = c.publish(a.topic, bytes.fromhex(a.payload_hex), qos=1)
    info.wait_for_publish(timeout=10)
    ok = info.is_published()
    c.disconnect()
    c.loop_stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
