"""Signals every new process that the daemon or its helper starts, as soon as it appears.

Usage: signal-racer.py DAEMON_PID SECONDS (SIGTERM ends it sooner, with its count)
Watches each pid as the kernel hands it out (ns_last_pid), and sends SIGHUP, SIGTERM and SIGINT in turn to each
whose parent is the daemon or one of its helpers (children of the daemon named dffs-spawn), before
or after its exec: a signal handler of the daemon's that ran in a new child would show in the
daemon (a reload, a stop). Prints how many signals it sent.
"""
import os
import signal
import sys
import time

daemon = int(sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2])


def stop(_signal, _frame):
    global deadline
    deadline = 0


signal.signal(signal.SIGTERM, stop)
signals = [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]


def parent_of(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            stat = f.read()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces: the fields after it are what counts.
    return int(stat[stat.rindex(b')') + 2:].split()[1])


def name_of(pid):
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip()
    except OSError:
        return ''


def last_pid():
    with open('/proc/sys/kernel/ns_last_pid') as f:
        return int(f.read())


pids = [int(name) for name in os.listdir('/proc') if name.isdigit()]
# The helpers running already, and any that the daemon starts later (below).
parents = {daemon} | {pid for pid in pids if parent_of(pid) == daemon and name_of(pid) == 'dffs-spawn'}
checked = last_pid()
sent = 0
while time.monotonic() < deadline:
    newest = last_pid()
    # Pids are handed out in turn (wrapping at pid_max): look at each new one once.
    candidates = range(checked + 1, newest + 1) if newest >= checked else range(300, newest + 1)
    for pid in candidates:
        parent = parent_of(pid)
        if parent not in parents:
            continue
        if parent == daemon and name_of(pid) == 'dffs-spawn':
            parents.add(pid)
            continue
        try:
            os.kill(pid, signals[sent % 3])
            sent += 1
        except OSError:
            pass
    checked = newest
print(sent)
