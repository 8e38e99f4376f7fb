"""Runs a program on a new pseudo-terminal and types answers at its prompts.

Usage: type_on_terminal.py PROGRAM ARGS... with one answer per line on
stdin. Each answer is typed once the program has printed one more prompt
(text ending in ": ") than before. Prints everything the terminal showed
and exits with the program's exit code.
"""

import os
import pty
import select
import sys
import time

answers = sys.stdin.read().splitlines()
pid, terminal = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])

shown = b""


def read_some():
    """Adds what the terminal shows within 0.1 s; False at its end."""
    global shown
    ready, _, _ = select.select([terminal], [], [], 0.1)
    if not ready:
        return True
    try:
        chunk = os.read(terminal, 4096)
    except OSError:  # EIO once the program has exited
        return False
    shown += chunk
    return bool(chunk)


def give_up(why):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.stdout.write(shown.decode(errors="replace"))
    sys.exit(why)


for number, answer in enumerate(answers, start=1):
    deadline = time.monotonic() + 30
    while shown.count(b": ") < number:
        if time.monotonic() > deadline or not read_some():
            give_up(f"prompt {number} never came")
    os.write(terminal, answer.encode() + b"\n")

deadline = time.monotonic() + 60
while read_some():
    if time.monotonic() > deadline:
        give_up("the program did not finish within 60 s")
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
