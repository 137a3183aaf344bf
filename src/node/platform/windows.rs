//! Windows: a Job Object per task, console control events, `%LOCALAPPDATA%`.

use std::fs::{File, OpenOptions};
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{OpenThread, ResumeThread, THREAD_SUSPEND_RESUME};

/// `SystemRoot` and `windir` are needed by most Windows programs (Winsock, COM) to start at all.
pub(super) const ENV_KEPT: &[&str] = &[
    "PATH",
    "PATHEXT",
    "SystemRoot",
    "windir",
    "SystemDrive",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "USERNAME",
    "LOCALAPPDATA",
    "APPDATA",
    "ProgramData",
    "ProgramFiles",
    "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE",
    "TZ",
];

const CREATE_SUSPENDED: u32 = 0x0000_0004;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
const CREATE_NO_WINDOW: u32 = 0x0800_0000;
const ERROR_SHARING_VIOLATION: i32 = 32;
/// How often the config file is checked for a change (Windows has no SIGHUP).
const CONFIG_CHECK: Duration = Duration::from_secs(2);

/// Prepares `cmd`: a console process group of its own (a Ctrl-C meant for the node does not
/// reach the program; the node decides), no console window, and started suspended: the
/// program runs no instruction before [`Group::attach`] has put it in its job.
pub fn prepare(cmd: &mut tokio::process::Command) {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW | CREATE_SUSPENDED);
}

/// Starts `cmd` (a helper process of the CLI, such as `demo`'s server and node) in a console
/// process group of its own, so a Ctrl-C in the console reaches only the caller.
pub fn spawn_detached(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::windows::process::CommandExt;
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP).spawn()
}

/// Asks a child started by [`spawn_detached`] to stop gracefully: Ctrl-Break to its process
/// group (a node drains on it).
pub fn ask_to_stop(child: &std::process::Child) {
    // SAFETY: plain call with integers; the group id of a CREATE_NEW_PROCESS_GROUP child is
    // its process id.
    unsafe {
        windows_sys::Win32::System::Console::GenerateConsoleCtrlEvent(
            windows_sys::Win32::System::Console::CTRL_BREAK_EVENT,
            child.id(),
        );
    }
}

/// A started program's whole tree: a Job Object with kill-on-close. Everything the program
/// starts joins the job, and only this node holds the job's handle, so the tree dies when the
/// handle closes: on [`Group::kill`], on drop, and when the node process ends in any way.
///
/// The program is created suspended ([`prepare`]), assigned to its job, and only then resumed,
/// so nothing it starts can escape the job. A node killed in the instant between creating the
/// program and assigning it leaves a suspended process that never ran a line (it holds no
/// file of the task and renders nothing); Windows has no way to create a process directly in a
/// job with the standard library's spawn.
#[derive(Debug)]
pub struct Group {
    job: Option<Job>,
}

#[derive(Debug)]
struct Job(HANDLE);

// SAFETY: a job handle is a kernel object handle, usable from any thread.
unsafe impl Send for Job {}
// SAFETY: as above; the handle is only used through &self by thread-safe Win32 calls.
unsafe impl Sync for Job {}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateJobObjectW and is closed exactly once. With
        // kill-on-close this ends every process left in the job.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

impl Group {
    /// Puts `child`, started suspended by [`prepare`], in a new kill-on-close job, then lets
    /// it run. On an error the child is still suspended: the caller kills it.
    pub fn attach(child: &tokio::process::Child) -> std::io::Result<Group> {
        let pid = child.id().ok_or_else(|| {
            std::io::Error::other("the program exited before it could join its job")
        })?;
        let process = child.raw_handle().ok_or_else(|| {
            std::io::Error::other("the program exited before it could join its job")
        })?;
        // SAFETY: plain Win32 calls on a handle this function creates and owns (closed by
        // Job's drop on every path) and on the child's process handle, valid while `child` is
        // borrowed. The limit struct is a zeroed plain-data struct with one flag set.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let job = Job(job);
            let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            if SetInformationJobObject(
                job.0,
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            ) == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if AssignProcessToJobObject(job.0, process as HANDLE) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            resume_threads(pid)?;
            Ok(Group { job: Some(job) })
        }
    }

    /// Ends every process of the job (exit code [`KILLED_EXIT_CODE`]).
    pub fn kill(&mut self) {
        if let Some(job) = self.job.take() {
            // SAFETY: a live job handle owned by `job`, closed right after by its drop.
            unsafe {
                TerminateJobObject(job.0, KILLED_EXIT_CODE as u32);
            }
        }
    }
}

/// Resumes every thread of process `pid` (a process created suspended has one, its main thread;
/// the standard library keeps no handle to it, so it is found by a thread snapshot).
fn resume_threads(pid: u32) -> std::io::Result<()> {
    // SAFETY: plain Win32 calls; the snapshot and thread handles are created here and closed
    // on every path; THREADENTRY32 is plain data with its size field set as the API requires.
    unsafe {
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
        if snapshot == INVALID_HANDLE_VALUE {
            return Err(std::io::Error::last_os_error());
        }
        let mut entry: THREADENTRY32 = std::mem::zeroed();
        entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
        let mut resumed = 0;
        let mut failure = None;
        let mut more = Thread32First(snapshot, &mut entry) != 0;
        while more {
            if entry.th32OwnerProcessID == pid {
                let thread = OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID);
                if thread.is_null() {
                    failure = Some(std::io::Error::last_os_error());
                } else {
                    if ResumeThread(thread) == u32::MAX {
                        failure = Some(std::io::Error::last_os_error());
                    } else {
                        resumed += 1;
                    }
                    CloseHandle(thread);
                }
            }
            more = Thread32Next(snapshot, &mut entry) != 0;
        }
        CloseHandle(snapshot);
        match (resumed, failure) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(std::io::Error::other(format!(
                "process {pid} has no thread to resume"
            ))),
            _ => Ok(()),
        }
    }
}

/// The program's exit code (Windows always has one).
pub fn exit_code(status: &ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

/// The exit code [`Group::kill`] gives the job's processes: the one a SIGKILLed program reports
/// on Unix (128 + 9), so logs read the same everywhere.
pub const KILLED_EXIT_CODE: i32 = 137;

/// Stop and reload requests: Ctrl-C, Ctrl-Break, console close, system shutdown and a service
/// stop (`sc stop`) stop;
/// a change of the config file's modification time reloads.
pub struct Signals {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    shutdown: tokio::signal::windows::CtrlShutdown,
    config: Option<(PathBuf, Option<SystemTime>)>,
    check: tokio::time::Interval,
}

impl Signals {
    /// Installs the console handlers and notes the config file's current modification time.
    pub fn new(config_file: Option<PathBuf>) -> std::io::Result<Signals> {
        use tokio::signal::windows;
        let config = config_file.map(|p| {
            let seen = modified(&p);
            (p, seen)
        });
        Ok(Signals {
            c: windows::ctrl_c()?,
            brk: windows::ctrl_break()?,
            close: windows::ctrl_close()?,
            shutdown: windows::ctrl_shutdown()?,
            config,
            check: tokio::time::interval(CONFIG_CHECK),
        })
    }

    /// The next request: Ctrl-C, Ctrl-Break, console close or shutdown stop; a new
    /// modification time of the config file reloads. Cancel-safe.
    pub async fn next(&mut self) -> super::Request {
        tokio::select! {
            _ = self.c.recv() => super::Request::Stop,
            _ = self.brk.recv() => super::Request::Stop,
            _ = self.close.recv() => super::Request::Stop,
            _ = self.shutdown.recv() => super::Request::Stop,
            _ = super::service::STOP.notified() => super::Request::Stop,
            _ = Self::changed(&mut self.config, &mut self.check) => super::Request::Reload,
        }
    }

    /// Resolves at the next stop request (config changes are then ignored).
    pub async fn stop(&mut self) {
        while self.next().await != super::Request::Stop {}
    }

    async fn changed(
        config: &mut Option<(PathBuf, Option<SystemTime>)>,
        check: &mut tokio::time::Interval,
    ) {
        let Some((path, seen)) = config else {
            return std::future::pending().await;
        };
        loop {
            check.tick().await;
            let now = modified(path);
            if now != *seen {
                *seen = now;
                return;
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Creates `dir` and its parents. Windows has no mode bits: the folder inherits its parent's
/// ACL (under `%LOCALAPPDATA%`, the default, only its user and administrators can read it).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Files inherit their folder's ACL (see [`create_private_dir`]); nothing to set here.
pub fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts
}

/// Opens (creating) `path` so that no other process can open it for writing while this one
/// holds it. `Ok(None)`: another process holds it. Windows closes the handle when the process
/// dies, so a crash leaves no stale lock.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    const FILE_SHARE_READ: u32 = 1;
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .share_mode(FILE_SHARE_READ)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a program a node may run: an `.exe` or `.com` file. Batch files (`.bat`,
/// `.cmd`) are refused: they run through cmd.exe, a shell, which would read a job's arguments.
pub fn is_executable(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(ext.as_deref(), Some("exe" | "com")) && path.is_file()
}

/// The names a bare program name is looked up as in PATH: `blender` -> `blender.exe`, `blender.com`.
pub fn executable_names(name: &Path) -> Vec<PathBuf> {
    if name.extension().is_some() {
        return vec![name.to_path_buf()];
    }
    ["exe", "com"]
        .iter()
        .map(|ext| name.with_extension(ext))
        .collect()
}

/// The per-user base for the node's state: `%LOCALAPPDATA%`.
pub fn state_base() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// What to tell a user whose state dir cannot be found.
pub const STATE_BASE_HINT: &str = "LOCALAPPDATA is not set";

/// The computer name.
pub fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// `%ProgramFiles%\Blender Foundation\Blender X.Y\blender.exe`, newest version first.
pub fn blender_defaults() -> Vec<PathBuf> {
    let base = std::env::var_os("ProgramFiles")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\Program Files"))
        .join("Blender Foundation");
    let names: Vec<String> = std::fs::read_dir(&base)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    super::newest_first(names)
        .into_iter()
        .map(|n| base.join(n).join("blender.exe"))
        .collect()
}
