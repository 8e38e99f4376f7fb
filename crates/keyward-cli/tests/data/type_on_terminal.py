"""Runs a program on a new pseudo-terminal and types replies at its prompts.

Usage: type_on_terminal.py [--keep-output] PROGRAM ARGS... with one reply
per line on stdin. Each reply is typed once the program has printed one
more prompt (text ending in ": ") than before. Prints everything the
terminal showed and exits with the program's exit code.

With --keep-output the terminal is only the program's controlling terminal
and standard input: its standard output and error are this script's
standard error, and this script prints the program's pid on a line of its
own first.
"""

import os
import pty
import select
import subprocess
import sys
import time

# Kept as UTF-8 bytes until the end: a memory scan of this script finds
# them there.
replies = sys.stdin.buffer.read().splitlines()
if sys.argv[1] == "--keep-output":
    terminal, side = pty.openpty()
    side_name = os.ttyname(side)

    def take_terminal():
        # A session leader's first terminal becomes its controlling one.
        os.setsid()
        os.close(os.open(side_name, os.O_RDWR))

    program = subprocess.Popen(sys.argv[2:], stdin=side, stdout=2, stderr=2, preexec_fn=take_terminal)
    os.close(side)
    pid = program.pid
    print(pid, flush=True)
else:
    pid, terminal = pty.fork()
    if pid == 0:
        os.execv(sys.argv[1], sys.argv[1:])

transcript = b""


def read_some():
    """Adds what the terminal shows within 0.1 s; False at its end."""
    global transcript
    ready, _, _ = select.select([terminal], [], [], 0.1)
    if not ready:
        return True
    try:
        chunk = os.read(terminal, 4096)
    except OSError:  # EIO once the program has exited
        return False
    transcript += chunk
    return bool(chunk)


def give_up(reason):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.stdout.write(transcript.decode(errors="replace"))
    sys.exit(reason)


for number, reply in enumerate(replies, start=1):
    deadline = time.monotonic() + 30
    while transcript.count(b": ") < number:
        if time.monotonic() > deadline or not read_some():
            give_up(f"prompt {number} never came")
    os.write(terminal, reply + b"\n")

deadline = time.monotonic() + 60
while read_some():
    if time.monotonic() > deadline:
        give_up("the program did not finish within 60 s")
_, status = os.waitpid(pid, 0)
sys.stdout.write(transcript.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
