//! Blender helpers for the end-to-end tests: finding Blender (or skipping only on request),
//! making the test scene, and checking a PNG's size without an image crate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Blender to test with. A missing Blender FAILS the test unless EDGEFARM_SKIP_BLENDER=1.
pub fn blender() -> Option<PathBuf> {
    if std::env::var("EDGEFARM_SKIP_BLENDER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: EDGEFARM_SKIP_BLENDER=1, this Blender test did not run");
        return None;
    }
    let path = std::env::var_os("EDGEFARM_TEST_BLENDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/blender".into());
    assert!(
        path.is_file(),
        "Blender not found at {} (install it, or set EDGEFARM_SKIP_BLENDER=1 to skip explicitly)",
        path.display()
    );
    Some(path)
}

/// Makes `<project>/scene.blend` with tests/fixtures/make_scene.py.
pub fn make_scene(blender: &Path, project: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_scene.py");
    let out = project.join("scene.blend");
    let output = Command::new(blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(&out)
        .output()
        .expect("run blender");
    assert!(
        output.status.success() && out.is_file(),
        "making the scene failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Width and height from a PNG's IHDR chunk, or `None` if the file is not a PNG.
pub fn png_size(path: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}
