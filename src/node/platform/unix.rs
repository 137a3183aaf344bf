//! Unix (Linux, macOS): process groups, signals, file modes, `flock`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::signal::unix::{signal, Signal, SignalKind};

pub(super) const ENV_KEPT: &[&str] = &[
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "LOGNAME",
];

/// Prepares `cmd` to run as its own process group; on Linux it is also SIGKILLed if the node
/// dies first.
pub fn prepare(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe. PDEATHSIG makes the kernel SIGKILL the program if the node dies
    // without cleaning up (SIGKILL, OOM), so a render never outlives its node and races the
    // node that leases the task next. It fires when the *thread* that spawned the child
    // exits: the node runs a current-thread runtime on the main thread.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `cmd` (a helper process of the CLI, such as `demo`'s server and node) in a process
/// group of its own, so a terminal's Ctrl-C reaches only the caller, which stops it in order.
pub fn spawn_detached(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).spawn()
}

/// Asks a child started by [`spawn_detached`] to stop gracefully (SIGTERM: a node drains).
pub fn ask_to_stop(child: &std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (we hold the Child).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// A started program's whole tree: its process group.
#[derive(Debug)]
pub struct Group {
    pgid: Option<i32>,
}

impl Group {
    /// The group `child` leads (it was started after [`prepare`]).
    pub fn attach(child: &tokio::process::Child) -> std::io::Result<Group> {
        Ok(Group {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        })
    }

    /// SIGKILL to every process of the group. Call it only while the leader is not reaped:
    /// after that its pid (and group id) could be reused by an unrelated process.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill(2) takes plain integers; a negative pid addresses the process group
            // this child leads (started with process_group(0), so pgid == its pid).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Exit code, or 128 + signal like a shell reports it.
pub fn exit_code(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The exit code a program killed by [`Group::kill`] reports.
pub const KILLED_EXIT_CODE: i32 = 128 + libc::SIGKILL;

/// Stop and reload requests: SIGTERM/SIGINT and SIGHUP.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (from here on the signals no longer end the process).
    /// `_config_file` is only watched on Windows.
    pub fn new(_config_file: Option<PathBuf>) -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next request: SIGTERM or SIGINT stop, SIGHUP reloads. Cancel-safe.
    pub async fn next(&mut self) -> super::Request {
        tokio::select! {
            _ = self.term.recv() => super::Request::Stop,
            _ = self.int.recv() => super::Request::Stop,
            _ = self.hup.recv() => super::Request::Reload,
        }
    }

    /// Resolves at the next SIGTERM or SIGINT (SIGHUP is then ignored).
    pub async fn stop(&mut self) {
        while self.next().await != super::Request::Stop {}
    }
}

/// Creates `dir` (and its parents) readable by its owner only (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes `opts` create files readable by their owner only (0600).
pub fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.mode(0o600)
}

/// Opens (creating) and exclusively locks `path`. `Ok(None)`: another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = private(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .open(path)?;
    // SAFETY: flock(2) on a file descriptor this function owns for the call's duration. The
    // kernel drops the lock when the process dies, even by SIGKILL.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Whether `path` is a file a node may run: a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The names a bare program name is looked up as in PATH.
pub fn executable_names(name: &Path) -> Vec<PathBuf> {
    vec![name.to_path_buf()]
}

/// The per-user base for the node's state: `$XDG_STATE_HOME`, else `~/.local/state`
/// (macOS: `~/Library/Application Support`).
pub fn state_base() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME").and_then(absolute);
    if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else {
        std::env::var_os("XDG_STATE_HOME")
            .and_then(absolute)
            .or_else(|| home.map(|h| h.join(".local/state")))
    }
}

/// What to tell a user whose state dir cannot be found.
pub const STATE_BASE_HINT: &str = "HOME is not set";

/// The host name, if the system says.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Where Blender is looked for when `[types.blender]` names no program, in order: first
/// `blender` in PATH (done by the caller), then these.
pub fn blender_defaults() -> Vec<PathBuf> {
    if cfg!(target_os = "macos") {
        vec![PathBuf::from(
            "/Applications/Blender.app/Contents/MacOS/Blender",
        )]
    } else {
        vec![
            PathBuf::from("/usr/bin/blender"),
            PathBuf::from("/usr/local/bin/blender"),
            PathBuf::from("/snap/bin/blender"),
        ]
    }
}
