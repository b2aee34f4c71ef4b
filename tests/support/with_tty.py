#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal, answering prompts.

Usage: with_tty.py [--show] ANSWER -- CMD ARGS...
Every time the command's terminal output ends with ': ' (a prompt such as
age's "Enter passphrase" or "Confirm passphrase"), ANSWER and a newline are
typed. Used by the tests to drive Go `age -p`, which reads passphrases from
the terminal only. With --show, everything the terminal shows (prompts, and
what was typed where the terminal echoes it) is copied to stdout. Exits with
the command's exit status.
"""
import os
import pty
import sys

def main():
    sep = sys.argv.index("--")
    show = sys.argv[1] == "--show"
    answer = sys.argv[2 if show else 1].encode()
    cmd = sys.argv[sep + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    buf = b""
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        if show:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        buf += data
        if buf.rstrip(b" ").endswith(b":") and buf.endswith(b": "):
            os.write(fd, answer + b"\n")
            buf = b""
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))

main()
