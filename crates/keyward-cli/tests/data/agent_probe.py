#!/usr/bin/python3
"""A minimal ssh-agent client for the policy tests: sends one request on
$SSH_AUTH_SOCK (or --socket PATH) and reports the outcome.

  agent_probe.py list                  print "<base64 blob> <comment>" per key
  agent_probe.py sign KIND PUBFILE     sign with the key in PUBFILE; KIND is
                                       userauth, raw or sshsig:NAMESPACE
  agent_probe.py ext NAME [HEXBODY]    send the extension NAME
  agent_probe.py names                 print "<name> <op,op,...>" per key
                                       that list@keyward returns

Exit status: 0 when the agent served the request, 5 when it refused
(SSH_AGENT_FAILURE or SSH_AGENT_EXTENSION_FAILURE), 1 on anything else.
Every request carries the bytes of CANARY, so a test can check that no
payload reaches the audit log.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys

CANARY = b"kw-payload-canary-5f1e"


def string(data):
    return struct.pack(">I", len(data)) + data


def request(sock_path, body):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(sock_path)
        sock.sendall(string(body))
        header = recv_exact(sock, 4)
        (length,) = struct.unpack(">I", header)
        return recv_exact(sock, length)


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise SystemExit("the agent closed the connection")
        data += chunk
    return data


def read_blob(pubfile):
    with open(pubfile) as handle:
        return base64.b64decode(handle.read().split()[1])


def signed_data(kind, blob):
    if kind == "userauth":
        algorithm = blob[4 : 4 + struct.unpack(">I", blob[:4])[0]]
        return (
            string(hashlib.sha256(CANARY).digest())
            + bytes([50])
            + string(b"user-" + CANARY)
            + string(b"ssh-connection")
            + string(b"publickey")
            + bytes([1])
            + string(algorithm)
            + string(blob)
        )
    if kind == "raw":
        return b"raw data " + CANARY
    if kind.startswith("sshsig:"):
        namespace = kind[len("sshsig:") :].encode()
        return b"SSHSIG" + string(namespace) + string(b"") + string(b"sha512") + string(hashlib.sha512(CANARY).digest())
    raise SystemExit("unknown kind " + kind)


def main(args):
    sock_path = os.environ.get("SSH_AUTH_SOCK")
    if args[:1] == ["--socket"]:
        sock_path, args = args[1], args[2:]
    command = args[0]
    if command == "list":
        reply = request(sock_path, bytes([11]))
        if reply[0] != 12:
            return 5 if reply[0] == 5 else 1
        (count,) = struct.unpack(">I", reply[1:5])
        offset = 5
        for _ in range(count):
            (length,) = struct.unpack(">I", reply[offset : offset + 4])
            blob = reply[offset + 4 : offset + 4 + length]
            offset += 4 + length
            (length,) = struct.unpack(">I", reply[offset : offset + 4])
            comment = reply[offset + 4 : offset + 4 + length]
            offset += 4 + length
            print(base64.b64encode(blob).decode(), comment.decode(errors="replace"))
        return 0
    if command == "sign":
        blob = read_blob(args[2])
        flags = 4  # SSH_AGENT_RSA_SHA2_512
        reply = request(sock_path, bytes([13]) + string(blob) + string(signed_data(args[1], blob)) + struct.pack(">I", flags))
        if reply[0] == 14:
            return 0
        if reply[0] == 5:
            return 5
        return 1
    if command == "names":
        name = b"list@keyward"
        reply = request(sock_path, bytes([27]) + string(name))
        if reply[0] != 29:
            return 5 if reply[0] in (5, 28) else 1
        offset = 1 + 4 + len(name)
        (length,) = struct.unpack(">I", reply[offset : offset + 4])
        for key in json.loads(reply[offset + 4 : offset + 4 + length]):
            print(key["name"], ",".join(key["operations"]))
        return 0
    if command == "ext":
        body = bytes.fromhex(args[2]) if len(args) > 2 else b""
        reply = request(sock_path, bytes([27]) + string(args[1].encode()) + body)
        if reply[0] in (5, 28):
            return 5
        return 0 if reply[0] in (6, 29) else 1
    raise SystemExit("unknown command " + command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
