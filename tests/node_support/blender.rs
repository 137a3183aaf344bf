//! Blender helpers for the end-to-end tests: finding Blender (or skipping only on request),
//! making the test scene, checking a rendered PNG, and finding a running Blender.

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

/// Makes `blend` with tests/fixtures/make_textured_scene.py: a scene whose cube shows a texture
/// linked by a relative path in a subfolder (`//textures/checker.png`).
pub fn make_textured_scene(blender: &Path, blend: &Path) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_textured_scene.py");
    let out = Command::new(blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(blend)
        .output()
        .expect("run blender");
    assert!(
        out.status.success() && blend.is_file(),
        "making the scene failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Blender's backup of the first save is not part of the project.
    let mut backup = blend.as_os_str().to_owned();
    backup.push("1");
    let _ = std::fs::remove_file(PathBuf::from(backup));
}

/// Width and height of a whole PNG: it decodes and ends with its IEND chunk (a frame still
/// being written fails either). `None` when the file is missing or not a whole PNG.
pub fn png_size(path: &Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.ends_with(b"IEND\xAE\x42\x60\x82") {
        return None;
    }
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).ok()?;
    Some((image.width(), image.height()))
}

/// True while a Blender process writes under `output` (found through /proc).
pub fn blender_running_for(output: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        cmdline.contains("blender") && cmdline.contains(output) && !stat.contains(") Z ")
    })
}
