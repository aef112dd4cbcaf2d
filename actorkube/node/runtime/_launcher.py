"""The launcher: prepares one process of a container and execs its command in place.

Run as ``python -I -S _launcher.py`` by the process runtime (``_procs.spawn``), with
its spec (JSON) on fd 4 and a status pipe on fd 3; it imports only the standard
library. Rules:

- Steps, in order: die with the runtime (``PR_SET_PDEATHSIG``: SIGKILL once the
  thread that started it is gone); join the container's cgroups; enter or build the
  mount namespace; change to the working directory; set RLIMIT_AS; exec.
- Any failure before the exec is reported on fd 3 as ``{"stage", "message"}`` and the
  launcher exits 127. A successful exec closes fd 3 (close-on-exec) without a word.
- ``run`` builds a private mount namespace when the spec has ``rootfs``: the root is
  an overlay whose lower layer is the host's root filesystem and whose upper layer is
  a tmpfs (the container's writable layer: its writes to the root filesystem stay in
  the container and vanish with it); the host's other filesystems (/proc, /sys, /dev,
  ...) are bound into it as they are. Then each volume is bound at its target.
- A target that does not exist is made inside the container only: in the writable
  layer, or inside a volume mounted before it (as runc does). If it would have to be
  made in one of the host's other filesystems, that filesystem gets an overlay of its
  own first, so nothing is ever created on the host.
- ``exec`` enters the mount namespace of the container's main process (``setns``)
  instead of building one.
"""

import ctypes
import fcntl
import json
import os
import resource
import signal
import sys
import termios

STATUS_FD = 3
SPEC_FD = 4

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1
# mount flags a bind mount keeps when it is remounted read-only (statvfs's ST_* bits
# have the same values as these MS_* flags)
KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME

libc = ctypes.CDLL(None, use_errno=True)


class Failure(Exception):
    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage


def fail(stage, message):
    raise Failure(stage, message)


def _call(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    _call(
        libc.mount(
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {source} on {target}",
    )


def umount(target):
    _call(libc.umount2(os.fsencode(target), MNT_DETACH), f"umount {target}")


def _unescape(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table():
    """``(id, parent id, mount point)`` of every mount this process sees, in order."""
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    return [(int(r[0]), int(r[1]), _unescape(r[4])) for r in rows]


def children(path):
    """Mount points of the mounts made directly on the mount at ``path``."""
    table = mount_table()
    at = [mount_id for mount_id, _, point in table if point == path]
    if not at:
        return []
    top = at[-1]
    return sorted({point for _, parent, point in table if parent == top and point != path})


def _opt(path):
    # overlay splits its options at "," and its layers at ":"; both can be escaped
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def overlay(target, lower, scratch):
    """An overlay on ``target`` whose lower layer is ``lower`` and whose upper layer is
    a directory of the tmpfs ``scratch``."""
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    os.mkdir(upper)
    os.mkdir(work)
    options = f"lowerdir={_opt(lower)},upperdir={_opt(upper)},workdir={_opt(work)}"
    mount("overlay", target, "overlay", 0, options)


def unshare():
    """Enters a new mount namespace, in which no mount propagates to or from the host."""
    _call(libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def build_root(scratch):
    """Makes the container's root (see the module rules) the root of this process;
    ``scratch`` is an empty host directory that holds its writable layer."""
    tops = children("/")
    mount("tmpfs", scratch, "tmpfs", 0, "mode=0700")
    root = os.path.join(scratch, "root")
    os.mkdir(root)
    overlay(root, "/", scratch)
    for top in tops:
        if os.path.lexists(root + top):  # else the host hides it too (a deleted mount point)
            mount(top, root + top, None, MS_BIND | MS_REC)
    if os.path.ismount(root + scratch):
        # the bind of a host filesystem that holds the scratch directory copied it
        umount(root + scratch)
    os.chdir(root)
    mount(".", "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def _mount_root(path):
    """The mount point of the filesystem that holds ``path``."""
    dev = os.stat(path).st_dev
    while path != "/" and os.stat(os.path.dirname(path)).st_dev == dev:
        path = os.path.dirname(path)
    return path


def shadow(point, serial):
    """An overlay on the host filesystem mounted at ``point`` (its writable layer on a
    tmpfs), with the mounts below it bound again on top."""
    scratch = f"/.actorkube-shadow-{serial}"
    os.mkdir(scratch)
    mount("tmpfs", scratch, "tmpfs", 0, "mode=0700")
    keep = os.path.join(scratch, "keep")
    os.mkdir(keep)
    below = children(point)
    mount(point, keep, None, MS_BIND | MS_REC)
    overlay(point, keep, scratch)
    for inner in below:
        relative = inner[len(point) :] if point != "/" else inner
        mount(keep + relative, point + relative, None, MS_BIND | MS_REC)
    # the overlay holds its own references to its layers
    umount(scratch)
    os.rmdir(scratch)


def make_target(target, is_dir, volumes_done, private, serial):
    """Creates the missing ``target`` inside the container (see the module rules);
    ``private`` holds the devices of the container's own overlays."""
    ancestor = os.path.dirname(target)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    ancestor = os.path.realpath(ancestor)
    in_volume = any(ancestor == v or ancestor.startswith(v.rstrip("/") + "/")
                    for v in volumes_done)  # fmt: skip
    if not in_volume and os.stat(ancestor).st_dev not in private:
        point = _mount_root(ancestor)
        shadow(point, serial)
        private.add(os.stat(point).st_dev)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def bind_volumes(volumes):
    """Binds each volume (an O_PATH fd of its host path, its target, read-only) in the
    container's root, parents before children."""
    done = []
    private = {os.stat("/").st_dev}
    by_depth = sorted(volumes, key=lambda v: v[1].count("/"))
    for serial, (fd, target, readonly) in enumerate(by_depth):
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        try:
            if os.path.lexists(target) and os.path.isdir(target) != is_dir:
                kind = "a directory" if os.path.isdir(target) else "a file"
                fail("mount", f"cannot mount {'a directory' if is_dir else 'a file'} at "
                              f"{target}: the container has {kind} there")  # fmt: skip
            if not os.path.lexists(target):
                make_target(target, is_dir, done, private, serial)
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
            if readonly:
                kept = os.statvfs(target).f_flag & KEPT_FLAGS
                mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except OSError as e:
            fail("mount", f"cannot mount the volume at {target}: {e}")
        done.append(os.path.realpath(target))
        os.close(fd)


def open_volumes(mounts):
    volumes = []
    for source, target, readonly in mounts:
        try:
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            fail("mount", f"volume source {source}: {e.strerror}")
        volumes.append((fd, target, readonly))
    return volumes


def enter(pid):
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fail("enter", "the container is not running")
    try:
        _call(libc.setns(fd, CLONE_NEWNS), "enter the container's mount namespace")
    except OSError as e:
        fail("enter", str(e))
    os.close(fd)


def exec_command(argv, env):
    name = argv[0]
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)  # Python ignores them; the command must not
    try:
        os.execvpe(name, argv, env)
    except FileNotFoundError:
        if "/" in name:
            fail("exec", f'exec: "{name}": no such file or directory')
        fail("exec", f'exec: "{name}": executable file not found in $PATH')
    except PermissionError:
        fail("exec", f'exec: "{name}": permission denied')
    except OSError as e:
        fail("exec", f'exec: "{name}": {e.strerror}')


def launch(spec):
    _call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "set the parent-death signal")
    if os.getppid() != spec["parent"]:
        os._exit(1)  # the runtime is already gone
    for procs in spec["cgroups"]:
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            fail("cgroup", f"cannot join cgroup {os.path.dirname(procs)}: {e.strerror}")
    if spec["mode"] == "exec":
        if spec["enter"]:
            enter(spec["enter"])
        if spec.get("tty"):
            # the terminal on fd 0 becomes this new session's controlling terminal, so
            # a shell gets job control and ^C reaches the foreground group
            try:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            except OSError as e:
                fail("tty", f"cannot make the terminal the command's own: {e.strerror}")
    elif spec["rootfs"] is not None:
        try:
            unshare()
        except OSError as e:
            fail("mount", f"cannot make the container's mount namespace: {e}")
        # opened in the new namespace (a bind takes its source from this namespace)
        # and before the root changes (the sources are host paths)
        volumes = open_volumes(spec["rootfs"]["mounts"])
        try:
            build_root(spec["rootfs"]["scratch"])
        except OSError as e:
            fail("mount", f"cannot make the container's root filesystem: {e}")
        bind_volumes(volumes)
    try:
        os.chdir(spec["workdir"])
    except FileNotFoundError:
        fail("workdir", f"working directory {spec['workdir']} does not exist")
    except OSError as e:
        fail("workdir", f"working directory {spec['workdir']}: {e.strerror}")
    if spec["rlimit_as"]:
        limit = spec["rlimit_as"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    exec_command(spec["argv"], dict(spec["env"]))


def main():
    with os.fdopen(SPEC_FD, "rb") as f:
        spec = json.load(f)
    os.set_inheritable(STATUS_FD, False)
    try:
        launch(spec)
    except Failure as e:
        report = {"stage": e.stage, "message": str(e)}
    except Exception as e:  # a bug here must still reach the runtime as a message
        report = {"stage": "launch", "message": f"{type(e).__name__}: {e}"}
    os.write(STATUS_FD, json.dumps(report).encode())
    os._exit(127)


if __name__ == "__main__":
    sys.exit(main())
