"""Runs a program on a new pseudo-terminal, waits for its prompt, then
types Ctrl-C. Prints, as JSON, whether the terminal echoed input before
the program started, at its prompt and after it ended, and the signal
that ended it.

Usage: interrupt_prompt.py PROGRAM ARGS... With PROBE_PATH set, also
reports whether that path existed while the prompt waited.
"""

import fcntl
import json
import os
import pty
import select
import sys
import termios
import time

terminal, side = pty.openpty()
echo = lambda: bool(termios.tcgetattr(side)[3] & termios.ECHO)
before = echo()
pid = os.fork()
if pid == 0:
    os.close(terminal)
    os.setsid()
    fcntl.ioctl(side, termios.TIOCSCTTY, 0)
    for stream in (0, 1, 2):
        os.dup2(side, stream)
    os.execv(sys.argv[1], sys.argv[1:])

transcript = b""
deadline = time.monotonic() + 30
while b": " not in transcript:
    ready, _, _ = select.select([terminal], [], [], 0.1)
    if ready:
        transcript += os.read(terminal, 4096)
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit(f"no prompt came: {transcript!r}")
# The program turns echo off before it writes the prompt.
during = echo()
probe = os.environ.get("PROBE_PATH")
probed = os.path.exists(probe) if probe else None
os.write(terminal, b"\x03")
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "before": before,
    "during": during,
    "after": echo(),
    "probe_existed": probed,
    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
    "transcript": transcript.decode(errors="replace"),
}))
