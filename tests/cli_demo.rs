//! `edgefarm demo` runs a whole farm and a sample job to the end, then stops everything.

use std::process::Command;

#[test]
fn demo_without_blender_renders_the_command_job_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_edgefarm"))
        .args(["demo", "--no-blender", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    for frame in 1..=12 {
        let file = dir.path().join(format!("renders/demo_frame_{frame}.txt"));
        assert!(file.is_file(), "{} missing; {stderr}", file.display());
    }
    assert!(
        stderr.contains("node stopped") && stderr.contains("server stopped"),
        "{stderr}"
    );
}
