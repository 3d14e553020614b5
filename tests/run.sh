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

# The log scan, mutual-TLS and crash tests run the server binaries themselves; `cargo test`
# builds another package's binaries only as test harnesses, so build the real ones first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"

echo "$pg_note"
