"""Runs a command on a pseudo-terminal of its own (as its controlling terminal) and
types into it: each step waits for a text to appear in the output, after the previous
step's match, then writes its keys. Prints one JSON object: the whole output, the exit
code, and how many steps ran.

    pty_drive.py STEPS_JSON TIMEOUT_SECONDS -- ARGV...

STEPS_JSON is a list of [expected text, keys to type]."""

import json
import os
import pty
import select
import signal
import sys
import time

steps = json.loads(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
argv = sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b""
seen = 0
step = 0
exited = None
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.1)
    if ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        out += data
    while step < len(steps):
        at = out.find(steps[step][0].encode(), seen)
        if at < 0:
            break
        seen = at + len(steps[step][0])
        os.write(fd, steps[step][1].encode())
        step += 1
waited, status = os.waitpid(pid, os.WNOHANG)
if waited == 0:
    time.sleep(1)
    waited, status = os.waitpid(pid, os.WNOHANG)
if waited == 0:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
print(json.dumps({
    "out": out.decode(errors="replace"),
    "code": os.waitstatus_to_exitcode(status),
    "steps": step,
}))
