"""Tries to take over the installation from inside the agent, as an attacker's code would.

Usage: takeover.py HOME KNOWN. Prints one line per step: ``step NAME: blocked (...)`` when the
step failed to reach the host's secrets, ``step NAME: LEAK (...)`` when it got through. KNOWN
is a file with the master key and the admin password, one per line, given only so that leaks
can be recognised (not on the command line: the host's command line is readable by anyone).
"""

import ctypes
import os
import signal
import sqlite3
import stat
import sys

home = sys.argv[1]
with open(sys.argv[2], "rb") as f:
    secrets = [line.strip() for line in f if line.strip()]
libc = ctypes.CDLL(None, use_errno=True)


def report(name, leaked, detail):
    print(f"step {name}: {'LEAK' if leaked else 'blocked'} ({detail})", flush=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def holds_secret(data):
    return any(s in data for s in secrets)


# 1. The environment, as Python sees it and as the kernel keeps it.
seen = [k for k in os.environ if k.startswith("IRONHOST_")]
report("os-environ", bool(seen), f"IRONHOST_* variables: {seen}")
report("proc-self-environ", holds_secret(read("/proc/self/environ")), "/proc/self/environ")

# 2. Every process's environment and command line this process can read.
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    for part in ("environ", "cmdline"):
        try:
            if holds_secret(read(f"/proc/{pid}/{part}")):
                found.append(f"{pid}/{part}")
        except OSError:
            pass
report("proc-environ-scan", bool(found), f"secrets found in: {found}")

# 3. The host's memory.
host = os.getppid()
try:
    with open(f"/proc/{host}/mem", "rb") as f:
        f.read(1)
    report("host-memory", True, f"/proc/{host}/mem opened")
except OSError as e:
    report("host-memory", False, str(e))
# Its open files (the store among them): the numbers may be listed, the files not reached.
reached = []
try:
    numbers = os.listdir(f"/proc/{host}/fd")
except OSError:
    numbers = []
for n in numbers:
    try:
        reached.append(os.readlink(f"/proc/{host}/fd/{n}"))
    except OSError:
        pass
    try:
        os.close(os.open(f"/proc/{host}/fd/{n}", os.O_RDONLY))
        reached.append(n)
    except OSError:
        pass
report("host-fds", bool(reached), f"{len(numbers)} descriptors listed, reached: {reached[:4]}")

# 4. The home: its files, directly and through other processes' views of the filesystem.
try:
    names = os.listdir(home)
    report("home-listing", bool(names), f"{home} lists {names}")
except OSError as e:
    report("home-listing", False, str(e))
for name in ("ironhost.db", "master.key"):
    paths = [os.path.join(home, name)]
    paths += [f"/proc/{pid}/root{home}/{name}" for pid in filter(str.isdigit, os.listdir("/proc"))]
    # Read and got bytes: a cover may stand in the file's place, empty.
    got = []
    for path in paths:
        try:
            if read(path):
                got.append(path)
        except OSError:
            pass
    report(f"read-{name}", bool(got), f"read: {got[:3]}")
try:
    with open(os.path.join(home, "planted"), "w") as f:
        f.write("x")
    report("home-write", True, "wrote a file into the home")
except OSError as e:
    report("home-write", False, str(e))

# 5. The store through SQLite: an admin token planted in api_tokens.
try:
    db = sqlite3.connect(f"file:{home}/ironhost.db?mode=rw", uri=True)
    db.execute("INSERT INTO api_tokens (token_hash) VALUES ('00')")
    db.commit()
    report("store-write", True, "inserted into api_tokens")
except sqlite3.Error as e:
    report("store-write", False, str(e))

# 6. Lifting the cover: unmount it, or unmount it from a fresh namespace of our own.
MNT_DETACH = 2
covers = [home, os.path.join(home, "ironhost.db"), os.path.join(home, "master.key")]
lifted = [c for c in covers if libc.umount2(c.encode(), MNT_DETACH) == 0]
report("umount", bool(lifted), f"unmounted: {lifted}, errno {ctypes.get_errno()}")
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
pid = os.fork()
if pid == 0:
    ok = libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0
    lifted = ok and any(libc.umount2(c.encode(), MNT_DETACH) == 0 for c in covers)
    os._exit(1 if lifted else 0)
_, status = os.waitpid(pid, 0)
report("umount-in-new-namespace", os.waitstatus_to_exitcode(status) == 1, "unshare then umount2")

# 7. The raw disk.
disks = []
for name in os.listdir("/dev"):
    try:
        if stat.S_ISBLK(os.stat(os.path.join("/dev", name)).st_mode):
            disks.append(name)
    except OSError:
        pass
readable = []
for d in disks:
    try:
        with open(os.path.join("/dev", d), "rb") as f:
            f.read(512)
        readable.append(d)
    except OSError:
        pass
report("raw-disk", bool(readable), f"block devices: {disks}, readable: {readable}")

# 8. Signalling the host (a SIGKILL would end the run unrecorded): Landlock scopes signals
# from ABI 6 (Linux 6.12).
abi = libc.syscall(444, None, 0, 1)
if abi < 6:
    report("signal-host", False, f"not checked: Landlock ABI {abi}")
else:
    try:
        os.kill(host, 0)
        report("signal-host", True, "kill(host, 0) succeeded")
    except OSError as e:
        report("signal-host", False, str(e))

# 9. Capabilities left.
with open("/proc/self/status") as f:
    caps = {l.split(":")[0]: int(l.split(":")[1], 16) for l in f if l.startswith("Cap")}
report("capabilities", caps["CapEff"] != 0 or caps["CapBnd"] != 0, f"{caps}")
print("takeover attempt finished", flush=True)
