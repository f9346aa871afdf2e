#!/usr/bin/env bash
# Stand-in for Apache Kafka's kafka-topics.sh (see ../kafka_admin_shim.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${RINGLOG_SHIM_PYTHON:-python3}" "$here/kafka_admin_shim.py" kafka-topics.sh "$@"
