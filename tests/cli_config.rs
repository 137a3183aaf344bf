//! Bad node configuration is refused at start with exit code 2 and a message naming the problem.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgefarm");

fn node_with(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    let config = config.replace("ROOT", &dir.path().display().to_string());
    std::fs::write(&path, config).expect("write");
    run(&["node", "--config", path.to_str().unwrap_or_default()])
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("EDGEFARM_URL")
        .env_remove("EDGEFARM_SECRET")
        .output()
        .expect("run edgefarm");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "url = \"http://127.0.0.1:9\"\nsecret = \"secret-x1\"\nproject_root = \"ROOT\"\noutput_root = \"ROOT/out\"\nstate_dir = \"ROOT/state\"\n";

#[test]
fn unknown_job_type_exits_2_naming_it() {
    let (code, err) = node_with(&format!("{BASE}[types.maya]\nprogram = \"/bin/true\"\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("maya"), "{err}");
}

#[test]
fn missing_program_exits_2_naming_it() {
    let (code, err) = node_with(&format!(
        "{BASE}[types.blender]\nprogram = \"/nonexistent/blender\"\n"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/blender"), "{err}");
}

#[test]
fn unreadable_config_file_exits_2_naming_it() {
    let (code, err) = run(&["node", "--config", "/nonexistent/node.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/node.toml"), "{err}");
}

#[test]
fn bad_toml_exits_2_with_the_position() {
    let (code, err) = node_with(&format!("{BASE}slots = [\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("node.toml") && err.contains("line"), "{err}");
}

#[test]
fn no_job_types_exits_2() {
    let (code, err) = node_with(BASE);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no job types"), "{err}");
}

#[test]
fn cli_without_a_secret_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["jobs", "--url", "http://127.0.0.1:9"])
        .env_remove("EDGEFARM_SECRET")
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unreachable_server_exits_1_with_the_reason() {
    let (code, err) = run(&[
        "jobs",
        "--url",
        "http://127.0.0.1:9",
        "--secret",
        "secret-x1",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

/// `--service` hands the process to the Windows service manager; elsewhere it is refused before
/// the node starts (exit 2, naming what to do instead), and nothing is enrolled.
#[cfg(unix)]
#[test]
fn service_flag_outside_windows_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    let config = format!("{BASE}[types.command.programs]\ntrue = \"/bin/true\"\n")
        .replace("ROOT", &dir.path().display().to_string());
    std::fs::write(&path, config).expect("write");
    let (code, err) = run(&[
        "node",
        "--service",
        "--config",
        path.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--service") && err.contains("systemd"),
        "{err}"
    );
    assert!(!dir.path().join("state/node.json").exists());
}

/// An FFmpeg without libx264 cannot make the H.264 previews: refused at start, named.
#[cfg(unix)]
#[test]
fn an_ffmpeg_without_libx264_exits_2_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // Lists encoders, but not libx264 (as a build without it does).
    let fake = dir.path().join("ffmpeg");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho ' V....D libvpx-vp9           libvpx VP9'\n",
    )
    .expect("write");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, err) = node_with(&format!("{BASE}[types.ffmpeg]\nprogram = {fake:?}\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("libx264") && err.contains("types.ffmpeg.program"),
        "{err}"
    );
    // Debian's FFmpeg has it (scripts/test installs it): the check passes and the next one
    // (the tags, checked after the types) is what fails.
    let (code, err) = node_with(&format!(
        "{BASE}tags = [\"bad tag\"]\n[types.ffmpeg]\nprogram = \"/usr/bin/ffmpeg\"\n"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad tag") && !err.contains("libx264"), "{err}");
}
