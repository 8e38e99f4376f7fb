#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from the fixture keys.

Run from anywhere; the seeds are small and checked in, so this is only
needed when a format changes.
"""
import base64
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
KEYS = os.path.join(HERE, "keys")


def string(data):
    if isinstance(data, str):
        data = data.encode()
    return struct.pack(">I", len(data)) + data


def u32(value):
    return struct.pack(">I", value)


def u64(value):
    return struct.pack(">Q", value)


def blob(name):
    line = subprocess.run(["ssh-keygen", "-y", "-f", os.path.join(KEYS, name)], check=True, capture_output=True, text=True).stdout
    return base64.b64decode(line.split()[1])


def write(target, seeds):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as file:
            file.write(data)


ED, EC, RSA = blob("ed25519"), blob("ecdsa"), blob("rsa")
SESSION = bytes(range(32))
USERAUTH = string(SESSION) + bytes([50]) + string("alice") + string("ssh-connection") + string("publickey") + bytes([1]) + string("ssh-ed25519") + string(ED)
HOSTBOUND = string(SESSION) + bytes([50]) + string("alice") + string("ssh-connection") + string("publickey-hostbound-v00@openssh.com") + bytes([1]) + string("ssh-ed25519") + string(ED) + string(ED)
SSHSIG = b"SSHSIG" + string("file") + string("") + string("sha512") + string(bytes(64))
HOSTPROVE = string("hostkeys-prove-00@openssh.com") + string(SESSION) + string(ED)


def sign(key, data, flags=0):
    return bytes([13]) + string(key) + string(data) + u32(flags)


def extension(name, body=b""):
    return bytes([27]) + string(name) + body


SESSION_BIND = extension("session-bind@openssh.com", string(ED) + string(SESSION) + string(bytes(64)) + bytes([1]))
REQUESTS = {
    "identities": bytes([11]),
    "sign-userauth": sign(ED, USERAUTH),
    "sign-hostbound": sign(EC, HOSTBOUND),
    "sign-sshsig-rsa": sign(RSA, SSHSIG, 4),
    "sign-hostprove": sign(ED, HOSTPROVE),
    "sign-other": sign(ED, b"hello"),
    "query": extension("query"),
    "status": extension("status@keyward"),
    "list": extension("list@keyward"),
    "session-bind": SESSION_BIND,
    "add-identity": bytes([17]) + string("ssh-ed25519"),
    "lock": bytes([22]) + string("pw"),
    "unknown": bytes([200]),
}
write("agent_request", REQUESTS)


def frames(peer, time, bodies):
    data = bytes([peer, time])
    for body in bodies:
        data += struct.pack(">H", len(body)) + body
    return data


write("dispatcher", {
    "owner-all": frames(0, 1, list(REQUESTS.values())[:8]),
    "owner-ext": frames(0, 1, list(REQUESTS.values())[6:]),
    "rule-uid-ec": frames(2, 1, [bytes([11]), sign(EC, USERAUTH), extension("list@keyward")]),
    "stranger": frames(3, 1, [bytes([11]), sign(ED, USERAUTH)]),
    "forwarded": frames(0, 1, [SESSION_BIND, sign(ED, USERAUTH), bytes([11])]),
    "window-early": frames(0, 0, [sign(blob("ed25519"), HOSTPROVE), bytes([11])]),
    "sealed": frames(0x80, 1, [bytes([11]), extension("status@keyward"), sign(ED, USERAUTH)]),
})

LISTED = b'[{"name":"ed","type":"ed25519","purpose":"sign","fingerprint":"SHA256:x","comment":"","public_key":"AAAA","not_before":null,"not_after":1800000000,"operations":["sign"]}]'
write("extension_reply", {
    "status-ok": bytes([1]) + bytes([29]) + string("status@keyward") + bytes([1]),
    "list-ok": bytes([2]) + bytes([29]) + string("list@keyward") + string(LISTED),
    "query-ok": bytes([0]) + bytes([29]) + string("query") + string("query") + string("status@keyward"),
    "failure-sealed": bytes([1]) + bytes([28]) + u32(1),
    "failure-bare": bytes([2]) + bytes([5]),
})

write("admin_request", {
    "status": bytes([1]),
    "unseal": bytes([2]) + string("correct horse"),
    "seal": bytes([3]),
    "reload": bytes([4]),
    "keygen": bytes([5]) + string("ed25519") + string("k") + string("sign") + string("c") + u64(0) + u64(0),
    "remove": bytes([6]) + string("k"),
    "passwd": bytes([7]) + string("old") + string("new"),
    "import": bytes([8]) + u32(1) + string("k") + string("ed25519") + string("sign") + string("c") + string(ED) + u64(0) + u64(0) + u32(1) + string("a") + string("b") + string(bytes(32)),
})

write("admin_reply", {
    "ok": bytes([0x80]) + string('{"state":"sealed"}'),
    "error": bytes([0x81]) + u32(4) + string("the daemon is sealed"),
})

write("signed_data", {"userauth": USERAUTH, "hostbound": HOSTBOUND, "sshsig": SSHSIG, "hostprove": HOSTPROVE, "hash32": bytes(32)})

write("config", {
    "full": b'''[daemon]
socket_group = "keyward"
admins = ["root", 1000]
audit = "requests"
audit_log = "/var/log/keyward/audit.log"
audit_fail_closed = true
idle_seal_minutes = 30
allow_sha1 = false

[[key]]
name = "deploy"
users = ["git", 1001]
groups = ["ops"]
operations = ["ssh-auth", "sshsig:git", "sign"]
forwarding = true

[mixmaster]
state_dir = "/var/lib/keyward/mix"
anon_from = "nobody@example.invalid"
''',
    "empty": b"",
})

write("import_openssh", {name: open(os.path.join(KEYS, name), "rb").read() for name in ["ed25519", "ecdsa", "rsa", "ed25519-encrypted"]})
write("import_pkcs8", {name: open(os.path.join(KEYS, name), "rb").read() for name in ["ed25519.p8", "ecdsa.p8", "rsa.p8"]})
