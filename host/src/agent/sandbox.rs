//! The boundary between the host and the agent's code.
//!
//! The agent's Python runs in a worker process of its own ([`worker`](super::worker)). The
//! host keeps everything the agent must not have: the master key, the admin password, the
//! store and the key files under the ironhost home, the signing keys in memory. This module
//! holds the operating-system calls that keep it that way:
//!
//! - the host process is not dumpable, so a process of the same user cannot read its memory or
//!   environment through `/proc` or attach a debugger to it;
//! - the worker starts with a clean environment, only its socket to the host open, and dies
//!   with the host;
//! - before Python starts, the worker isolates itself ([`isolate`]): a user and mount namespace
//!   of its own in which the ironhost home is covered by an empty read-only filesystem (and, for
//!   a root host, `/dev` is a private minimal one, so disks cannot be read raw); a Landlock
//!   domain, so it cannot reach into other processes (`/proc/PID/root`, `mem`, `environ`) or
//!   signal them; no capabilities, none to regain, and no new privileges.
#![expect(
    unsafe_code,
    reason = "prctl, unshare, mount, capset, Landlock and the fork-to-exec step of the worker"
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's own credentials: overwritten in the host's environment block once read (the
/// agent's process never gets any `IRONHOST_*` variable). The database URL may hold a password.
pub const SCRUBBED_VARS: [&str; 3] = [
    "IRONHOST_MASTER_KEY",
    "IRONHOST_ADMIN_PASSWORD",
    "IRONHOST_DATABASE_URL",
];

/// The descriptor the worker finds its socket to the host on.
pub const WORKER_FD: RawFd = 3;

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn check(rc: libc::c_long, what: &str) -> io::Result<()> {
    if rc < 0 {
        Err(last_error(what))
    } else {
        Ok(())
    }
}

/// Make this process undumpable: processes of the same user can no longer read its memory or
/// environment through `/proc`, nor trace it.
pub fn protect_host_process() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    check(rc.into(), "prctl(PR_SET_DUMPABLE)")
}

/// Set up `cmd` to start a worker: `socket` becomes its descriptor [`WORKER_FD`] and `egress`,
/// when given, its [`EGRESS_FD`](super::egress::EGRESS_FD) (every other descriptor of the host
/// is close-on-exec), and it is killed when the host dies.
pub fn worker_command(cmd: &mut Command, socket: RawFd, egress: Option<RawFd>) {
    let host = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls are made (dup2, fcntl, prctl,
    // getppid, _exit), on values prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Each source first moved above the targets, so no dup2 closes another source.
            let mut moves = [
                (socket, WORKER_FD),
                (egress.unwrap_or(-1), super::egress::EGRESS_FD),
            ];
            for (src, _) in &mut moves {
                if *src >= 0 {
                    *src = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 10);
                    if *src < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            for (src, dst) in moves {
                if src >= 0 && libc::dup2(src, dst) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The host may have died before the line above took effect.
            if libc::getppid() != host {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Ironhost's own entries in its home: what is covered one by one when the agent works inside
/// the home (otherwise the whole home is). Everything the host keeps there is one of these.
pub const HOME_ENTRIES: [&str; 6] = [
    "ironhost.db",
    "ironhost.db-wal",
    "ironhost.db-shm",
    "master.key",
    "agents",
    "cache",
];

/// What [`isolate`] did, for the worker's debug line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    pub hidden: Vec<PathBuf>,
    pub private_dev: bool,
    pub landlock_abi: i64,
    /// In a network namespace of its own (and, from Landlock ABI 4, no TCP connect or bind).
    pub no_network: bool,
}

/// Isolate this process (the worker, before Python starts) from the host: see the module
/// documentation. `hidden` are the paths to cover (the ironhost home, or its entries): a
/// directory by an empty read-only filesystem, a file by an empty read-only file. Must run
/// while the process has one thread.
pub fn isolate(hidden: &[PathBuf], no_network: bool) -> io::Result<Isolation> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let cwd = std::env::current_dir()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read the current directory: {e}")))?;
    // Without network: a network namespace of its own, with no interface up.
    let net = if no_network { libc::CLONE_NEWNET } else { 0 };
    // SAFETY: unshare with flags only; the process is single-threaded here.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | net) };
    check(
        rc.into(),
        "unshare(CLONE_NEWUSER | CLONE_NEWNS): user namespaces are not available to this user",
    )?;
    // The same user and group inside as outside.
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1"))?;
    // Nothing mounted here propagates back to the host's namespace.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let mut covered = Vec::new();
    for path in hidden {
        let Ok(real) = path.canonicalize() else {
            continue; // nothing there to hide
        };
        if covered.contains(&real) {
            continue;
        }
        if real.is_dir() {
            mount(
                Some("tmpfs"),
                &real,
                Some("tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some("size=4k,mode=0500"),
            )?;
        } else {
            // An empty file in its place, read-only.
            mount(Some("/dev/null"), &real, None, libc::MS_BIND, None)?;
            mount(
                None,
                &real,
                None,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NOEXEC,
                None,
            )?;
        }
        covered.push(real);
    }
    let private_dev = uid == 0;
    if private_dev {
        minimal_dev()?;
    }
    // A working directory inside a covered one would still reach what is under the cover.
    std::env::set_current_dir(&cwd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot enter {} again: {e}", cwd.display()),
        )
    })?;
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(rc.into(), "prctl(PR_SET_NO_NEW_PRIVS)")?;
    let landlock_abi = landlock(no_network)?;
    drop_capabilities()?;
    Ok(Isolation {
        hidden: covered,
        private_dev,
        landlock_abi,
        no_network,
    })
}

fn write_proc(path: &str, text: &str) -> io::Result<()> {
    std::fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: a path with a NUL byte", p.display()),
        )
    })
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(|s| CString::new(s).unwrap_or_default());
    let fstype = fstype.map(|s| CString::new(s).unwrap_or_default());
    let data = data.map(|s| CString::new(s).unwrap_or_default());
    let t = cstr(target)?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            t.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(rc.into(), &format!("mount on {}", target.display()))
}

/// Replace `/dev` with a small one: the character devices programs need and the terminal, no
/// disks (a root process could otherwise read the store from the raw disk).
fn minimal_dev() -> io::Result<()> {
    const NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
    // Hold the real nodes before /dev is covered.
    let mut held = Vec::new();
    for name in NODES {
        let path = Path::new("/dev").join(name);
        if let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
        {
            held.push((name, f));
        }
    }
    let pts = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open("/dev/pts")
        .ok();
    let dev = Path::new("/dev");
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )?;
    for (name, f) in &held {
        let node = dev.join(name);
        std::fs::File::create(&node)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", node.display())))?;
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
        mount(Some(&source), &node, None, libc::MS_BIND, None)?;
    }
    if let Some(f) = &pts {
        let dir = dev.join("pts");
        std::fs::create_dir(&dir)?;
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
        mount(
            Some(&source),
            &dir,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    }
    let shm = dev.join("shm");
    std::fs::create_dir(&shm)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))?;
    }
    Ok(())
}

// Landlock (linux/landlock.h).
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_ACCESS_FS_MAKE_CHAR: u64 = 1 << 6;
const LANDLOCK_ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;
const LANDLOCK_SCOPE_SIGNAL: u64 = 1 << 1;
const LANDLOCK_ACCESS_NET_BIND_TCP: u64 = 1 << 0;
const LANDLOCK_ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// Enter a Landlock domain: from inside it, processes outside cannot be traced or inspected
/// through `/proc` (and, from ABI 6, not signalled); device nodes cannot be made. Returns the
/// kernel's Landlock ABI version.
fn landlock(no_network: bool) -> io::Result<i64> {
    // SAFETY: the version query takes no attribute.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi < 1 {
        return Err(last_error(
            "Landlock is not available (Linux 5.13 or later with Landlock enabled is needed)",
        ));
    }
    let attr = RulesetAttr {
        handled_access_fs: LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK,
        handled_access_net: if no_network && abi >= 4 {
            LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 { LANDLOCK_SCOPE_SIGNAL } else { 0 },
    };
    // Older kernels know a shorter attribute: give the size of what they know.
    let size = if abi >= 6 {
        std::mem::size_of::<RulesetAttr>()
    } else if abi >= 4 {
        16
    } else {
        8
    };
    // SAFETY: `attr` is a valid landlock_ruleset_attr of at least `size` bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            size,
            0u32,
        )
    };
    check(fd, "landlock_create_ruleset")?;
    // SAFETY: `fd` is the ruleset just created; it is closed after use.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd as libc::c_int, 0u32) };
    let err = last_error("landlock_restrict_self");
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd as libc::c_int) };
    if rc < 0 {
        return Err(err);
    }
    Ok(abi)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
// securebits: no capabilities for uid 0 on exec, no fixup on uid changes; each locked.
const SECURE_BITS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20;

/// Give up every capability (held in the worker's own user namespace, over its mounts) and
/// the means to get one back on exec, so the covers cannot be lifted.
fn drop_capabilities() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; unknown capability numbers fail with EINVAL.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            break;
        }
        check(rc.into(), "prctl(PR_CAPBSET_DROP)")?;
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) };
    check(rc.into(), "prctl(PR_SET_SECUREBITS)")?;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: a v3 header and two data records, as capset expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    check(rc, "capset")?;
    // Ambient capabilities are cleared with the permitted set.
    Ok(())
}

/// The worker's socket to the host, at [`WORKER_FD`]; an error when it is not a socket (the
/// worker started by hand).
pub fn worker_socket() -> io::Result<std::os::unix::net::UnixStream> {
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer.
    let rc = unsafe { libc::fstat(WORKER_FD, &mut st) };
    if rc < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "`ironhost __agent-worker` is started by `ironhost start`, not by hand",
        ));
    }
    // SAFETY: the descriptor is open, a socket, and owned by nothing else in this process.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(WORKER_FD) };
    Ok(std::os::unix::net::UnixStream::from(fd))
}

/// Overwrite the values of `names` in this process's original environment block (what
/// `/proc/PID/environ` shows), after the host has read them: a secret the host needs stays in
/// its own memory only. Returns how many values were overwritten.
pub fn scrub_environment_block(names: &[&str]) -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("/proc/self/stat has no field {n}")))
    };
    let (start, end) = (field(50)?, field(51)?);
    if start == 0 || end <= start {
        return Ok(0);
    }
    // SAFETY: [env_start, env_end) is this process's environment block, mapped and writable
    // for its whole life (it sits at the top of the main thread's stack); nothing else writes it.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let mut scrubbed = 0;
    let mut at = 0;
    while at < block.len() {
        let len = block[at..]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(block.len() - at);
        let entry = &mut block[at..at + len];
        for name in names {
            let n = name.len();
            if entry.len() > n && entry.starts_with(name.as_bytes()) && entry[n] == b'=' {
                entry[n + 1..].fill(b'*');
                scrubbed += 1;
            }
        }
        at += len + 1;
    }
    Ok(scrubbed)
}
