//! FFmpeg helpers for the tests of preview videos: Debian's ffmpeg (a failure when missing,
//! never a skip) and what ffprobe says of a video.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Debian's ffmpeg package (scripts/test installs it); missing is a failure, not a skip.
pub fn ffmpeg() -> PathBuf {
    let path = PathBuf::from("/usr/bin/ffmpeg");
    assert!(
        path.is_file() && Path::new("/usr/bin/ffprobe").is_file(),
        "ffmpeg/ffprobe missing: apt-get install ffmpeg (scripts/test installs it)"
    );
    path
}

/// What ffprobe says of the video stream: codec, size, frame rate, frames counted by decoding.
pub fn probe(video: &Path) -> Value {
    let out = Command::new("/usr/bin/ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt",
            "-of",
            "json",
        ])
        .arg(video)
        .output()
        .expect("run ffprobe (scripts/test installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        video.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    v["streams"][0].clone()
}
