"""Parses Prometheus text from standard input with the prometheus_client
library's own parser and prints one `name{labels} value` line per sample,
sorted; exits non-zero when the text does not parse."""

import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    lines = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        if not family.name.startswith("ecko_"):
            raise SystemExit(f"metric {family.name} does not start with ecko_")
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            lines.append(f"{name} {float(sample.value)!r}")
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main()
