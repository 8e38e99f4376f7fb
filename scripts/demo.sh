#!/usr/bin/env bash
# Keyward's main job, end to end: build, create a throwaway keystore, start
# the daemon, unseal it, and use a daemon-held key with OpenSSH's own
# clients (ssh-add -L, ssh-keygen -Y sign, ssh-keygen -Y verify). Nothing is
# left behind: the keystore lives in a temp directory and the daemon is
# stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ssh-keygen >/dev/null || ! command -v ssh-add >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null
    else
        echo "error: OpenSSH's clients are missing; hint: sudo apt-get install -y openssh-client" >&2
        exit 1
    fi
fi

echo "==> building keyward"
cargo build --quiet -p keyward-cli
keyward="$PWD/target/debug/keyward"

work=$(mktemp -d /tmp/keyward-demo.XXXXXX)
chmod 755 "$work"
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

kw() { "$keyward" --keystore "$work/keystore" --socket-dir "$work/run" "$@"; }
head -c 18 /dev/urandom | base64 > "$work/passphrase"   # a throwaway passphrase

echo "==> keyward init (calibrates Argon2id to about a second on this machine)"
kw init --passphrase-fd 3 3<"$work/passphrase"
echo "==> keyward keygen: an Ed25519 and an RSA-3072 key, encrypted in the keystore"
kw keygen --type ed25519 --name deploy --comment "demo deploy key" --passphrase-fd 3 3<"$work/passphrase"
kw keygen --type rsa-3072 --name release --comment "demo release key" --passphrase-fd 3 3<"$work/passphrase"
kw list

echo "==> keyward daemon (starts sealed: no passphrase source given)"
kw daemon
daemon_pid=$(cat "$work/run/daemon.lock")
kw status || echo "(exit $?: sealed, as expected)"

echo "==> keyward unseal"
kw unseal --passphrase-fd 3 3<"$work/passphrase"
export SSH_AUTH_SOCK="$work/run/agent.sock"

echo "==> ssh-add -L through SSH_AUTH_SOCK=$SSH_AUTH_SOCK"
ssh-add -L

echo "==> ssh-keygen -Y sign with the daemon-held key, then ssh-keygen -Y verify"
echo "hello from keyward" > "$work/message.txt"
kw pubkey deploy > "$work/deploy.pub"
ssh-keygen -q -Y sign -n file -f "$work/deploy.pub" "$work/message.txt"
echo "demo@keyward $(cat "$work/deploy.pub")" > "$work/allowed_signers"
ssh-keygen -Y verify -f "$work/allowed_signers" -I demo@keyward -n file -s "$work/message.txt.sig" < "$work/message.txt"

echo "==> keyward sign (RSA-3072), verified by ssh-keygen"
kw pubkey release > "$work/release.pub"
kw sign --key release "$work/message.txt" > "$work/message.release.sig"
echo "demo@keyward $(cat "$work/release.pub")" > "$work/allowed_signers"
ssh-keygen -Y verify -f "$work/allowed_signers" -I demo@keyward -n file -s "$work/message.release.sig" < "$work/message.txt"

echo "==> no private key on disk: the keystore file holds only ciphertext"
ls -l "$work/keystore"

echo "==> keyward seal: keys wiped from memory; signing now fails"
kw seal
if ssh-keygen -q -Y sign -n file -f "$work/deploy.pub" "$work/message.txt" 2>/dev/null <<< "y"; then
    echo "error: signing worked while sealed" >&2
    exit 1
fi
kw status || echo "(exit $?: sealed again)"
echo "==> done"
