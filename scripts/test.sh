#!/usr/bin/env bash
# Runs Keyward's whole test suite: installs the outside programs the tests
# drive (OpenSSH, age, rage, ...), builds, runs every test, then the short
# checks (fuzz smoke runs, systemd unit checks).
#
# Needs a Debian machine with the Rust toolchain. Installing packages needs
# root; as another user, install the packages listed below first.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openssh-client openssh-server age faketime strace systemd dbus util-linux procps python3)

install_packages() {
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages: ${missing[*]}" >&2
        echo "hint: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_rage() {
    # rage is not packaged in Debian 12; cargo builds it (a few minutes),
    # into a cache kept between runs where the machine keeps it.
    local root="${KEYWARD_TOOLS:-$HOME/.cache/keyward-tools}"
    if [ ! -x "$root/bin/rage" ]; then
        echo "==> cargo install rage (cached in $root)"
        cargo install --quiet --locked --root "$root" rage
    fi
    export PATH="$root/bin:$PATH"
}

install_packages
install_rage
mkdir -p /run/sshd 2>/dev/null || true

echo "==> cargo test --workspace"
cargo test --workspace --no-fail-fast

for check in scripts/check-*.sh; do
    [ -e "$check" ] || continue
    echo "==> $check"
    bash "$check"
done
