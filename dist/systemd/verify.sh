#!/bin/bash
# Checks the units offline with systemd-analyze: `verify` must print nothing,
# and `security` must rate keyward.service at or below MAX_EXPOSURE.
# Needs the Debian package "systemd"; systemd need not be PID 1.
set -euo pipefail

MAX_EXPOSURE=${MAX_EXPOSURE:-1.0}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v systemd-analyze >/dev/null; then
    echo "verify.sh: systemd-analyze not found; install the systemd package" >&2
    exit 1
fi

# `verify` checks that ExecStart exists, so build a scratch root with the
# system's units and a placeholder /usr/bin/keyward.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/bin" "$root/etc/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /bin/sh "$root/bin/sh"
printf '#!/bin/sh\n' > "$root/usr/bin/keyward"
chmod 755 "$root/usr/bin/keyward"
cp "$here"/*.service "$root/etc/systemd/system/"

output=$(systemd-analyze verify --man=no --root="$root" keyward.service keyward-unseal.service 2>&1)
if [ -n "$output" ]; then
    echo "verify.sh: systemd-analyze verify reported:" >&2
    echo "$output" >&2
    exit 1
fi
echo "systemd-analyze verify: no findings"

score=$(systemd-analyze security --offline=yes --root="$root" keyward.service 2>&1 |
    sed -n 's/.*Overall exposure level for keyward.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
    echo "verify.sh: no exposure score from systemd-analyze security" >&2
    exit 1
fi
echo "systemd-analyze security: keyward.service exposure $score (maximum $MAX_EXPOSURE)"
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "verify.sh: exposure $score is above $MAX_EXPOSURE" >&2
    exit 1
fi
