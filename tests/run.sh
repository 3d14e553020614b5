#!/usr/bin/env bash
# Runs every carepath test: unit, property, storage contract and end-to-end.
#
# The storage contract and end-to-end suites also run on PostgreSQL when a server
# answers at CAREPATH_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test,
# a role that may create databases). When none answers, the PostgreSQL suite is skipped
# and this script says so; with CAREPATH_REQUIRE_POSTGRES=1 that is an error instead.
set -euo pipefail
cd "$(dirname "$0")/.."

url="${CAREPATH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
hostport="${url#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
host="${hostport%%:*}"
port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5432

if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    export CAREPATH_TEST_POSTGRES_URL="$url"
    pg_note="PostgreSQL suite: ran against $host:$port"
else
    if [ "${CAREPATH_REQUIRE_POSTGRES:-0}" = "1" ]; then
        echo "PostgreSQL is required but nothing answers at $host:$port" >&2
        exit 1
    fi
    unset CAREPATH_TEST_POSTGRES_URL
    pg_note="PostgreSQL suite: SKIPPED (nothing answers at $host:$port; set CAREPATH_TEST_POSTGRES_URL to run it)"
fi
echo "$pg_note"

# The notification tests run a real SMTP server (aiosmtpd) and read printed letters back
# with pdftotext (poppler-utils); install them when missing.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    python3 -m pip install --quiet aiosmtpd
fi
# Records kept in S3 are tested against a real S3 server (moto).
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]'
fi
if ! command -v pdftotext >/dev/null 2>&1; then
    apt-get update >/dev/null && apt-get install -y poppler-utils >/dev/null
fi
# The metrics test scrapes the server with a real Prometheus (its own config and a
# temporary storage folder; the package's service is not used).
if ! command -v prometheus >/dev/null 2>&1; then
    apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null
fi
# The FHIR end-to-end checks (tests/fhir/pas_e2e.py) read every answer with an independent
# FHIR library and sign SMART client assertions; pip leaves pins already met alone.
python3 -m pip install --quiet --disable-pip-version-check -r tests/fhir/requirements.txt

# The event tests publish to a NATS server with JetStream (CAREPATH_TEST_NATS_URL, by
# default 127.0.0.1:4222); when nothing answers there, start one for this run.
if [ -z "${CAREPATH_TEST_NATS_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    if ! command -v nats-server >/dev/null 2>&1; then
        apt-get update >/dev/null && apt-get install -y nats-server >/dev/null
    fi
    nats_dir="$(mktemp -d)"
    nats-server -a 127.0.0.1 -p 4222 -js -sd "$nats_dir" >"$nats_dir/log" 2>&1 &
    nats_pid=$!
    trap 'kill "$nats_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 30); do
        (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break
        sleep 0.2
    done
fi

# The log scan, mutual-TLS and crash tests run the server binaries themselves; `cargo test`
# builds another package's binaries only as test harnesses, so build the real ones first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"

echo "$pg_note"
