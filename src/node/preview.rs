//! Thumbnails of finished frames for the dashboard (`POST /v1/tasks/{id}/preview`).
//!
//! Each `Saved:` frame becomes the task's newest frame; at most one preview per task leaves
//! every [`GAP`] (the server accepts one per task per `EVERY_MS` and answers 429 to more), and
//! a newer frame replaces one still waiting, so a fast task sends its latest frame rather than
//! a backlog. Decoding and resizing run on the blocking pool (`spawn_blocking`): an 8K EXR
//! takes a while and must not delay heartbeats. A preview is a nicety: whatever goes wrong
//! with one is logged (once per task above debug level) and the task goes on.
//!
//! The image is a JPEG of at most [`MAX_SIDE`] pixels a side, under the server's 120 KiB limit
//! (quality and size step down until it fits). Float images (OpenEXR: linear light,
//! premultiplied alpha) are tone-mapped with Reinhard (`c / (1 + c)`) and encoded to sRGB;
//! 8- and 16-bit images are shown as they are. Alpha is laid over a dark grey.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, Rgb, RgbImage};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{Client, PreviewReply};

/// The server's size limit for one preview (`core::api::previews::MAX_BYTES`).
pub const MAX_BYTES: usize = crate::core::api::previews::MAX_BYTES;
/// Time between two previews of one task: the server's minimum plus a margin for clocks.
pub const GAP: Duration = Duration::from_millis(crate::core::api::previews::EVERY_MS + 250);
/// Longest side of a thumbnail, pixels.
pub const MAX_SIDE: u32 = 480;
/// The background alpha is laid over (sRGB, and its linear value for float images).
const BG: u8 = 40;
const BG_LINEAR: f32 = 0.021;

/// Why no thumbnail could be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{0} is not under the output root")]
    Outside(PathBuf),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding {path}")]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("encoding the thumbnail")]
    Encode(#[source] image::ImageError),
    #[error("even the smallest thumbnail is over {MAX_BYTES} bytes")]
    TooBig,
}

/// A JPEG thumbnail of the image at `path`, which must lie under `root` (canonical): the path
/// comes from a program's output, and a job must not make the node upload other files.
pub fn thumbnail(path: &Path, root: &Path) -> Result<Vec<u8>, PreviewError> {
    let read = |source| PreviewError::Read {
        path: path.to_path_buf(),
        source,
    };
    let real = path.canonicalize().map_err(read)?;
    if !real.starts_with(root) {
        return Err(PreviewError::Outside(path.to_path_buf()));
    }
    let bytes = std::fs::read(&real).map_err(read)?;
    let img = image::load_from_memory(&bytes).map_err(|source| PreviewError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    encode_small(&img)
}

/// Encodes `img` as a JPEG under [`MAX_BYTES`], shrinking it as needed.
pub fn encode_small(img: &DynamicImage) -> Result<Vec<u8>, PreviewError> {
    for (side, quality) in [(MAX_SIDE, 85), (320, 70), (200, 60), (120, 50)] {
        let small = if img.width() > side || img.height() > side {
            img.thumbnail(side, side)
        } else {
            img.clone()
        };
        let rgb = display_rgb(&small);
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&rgb)
            .map_err(PreviewError::Encode)?;
        if out.len() <= MAX_BYTES {
            return Ok(out);
        }
    }
    Err(PreviewError::TooBig)
}

/// 8-bit sRGB for display: float images tone-mapped, alpha laid over the background.
fn display_rgb(img: &DynamicImage) -> RgbImage {
    if matches!(
        img,
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_)
    ) {
        let f = img.to_rgba32f();
        RgbImage::from_fn(f.width(), f.height(), |x, y| {
            let [r, g, b, a] = f.get_pixel(x, y).0;
            let a = if a.is_finite() {
                a.clamp(0.0, 1.0)
            } else {
                1.0
            };
            // Premultiplied: the background shows through by (1 - alpha).
            let c = |v: f32| {
                let v = if v.is_finite() { v.max(0.0) } else { 0.0 } + BG_LINEAR * (1.0 - a);
                to_srgb8(v / (1.0 + v))
            };
            Rgb([c(r), c(g), c(b)])
        })
    } else {
        let rgba = img.to_rgba8();
        RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            let over = |c: u8| ((c as u32 * a as u32 + BG as u32 * (255 - a as u32)) / 255) as u8;
            Rgb([over(r), over(g), over(b)])
        })
    }
}

/// Linear 0..1 to an 8-bit sRGB value.
fn to_srgb8(linear: f32) -> u8 {
    let l = linear.clamp(0.0, 1.0);
    let s = if l <= 0.003_130_8 {
        12.92 * l
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// The previews of one running task.
pub struct Previews {
    client: Client,
    task: String,
    lease: String,
    root: PathBuf,
    /// The newest saved frame not sent yet.
    newest: Option<PathBuf>,
    /// No preview leaves before this.
    next_at: Instant,
    in_flight: Option<JoinHandle<()>>,
    /// Set once a failure was logged above debug level.
    told: Arc<AtomicBool>,
}

impl Previews {
    /// Previews for task `task` under lease `lease`, of files under `root` (canonical).
    pub fn new(client: Client, task: &str, lease: &str, root: &Path) -> Self {
        Previews {
            client,
            task: task.to_string(),
            lease: lease.to_string(),
            root: root.to_path_buf(),
            newest: None,
            next_at: Instant::now(),
            in_flight: None,
            told: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A frame was saved: it is now the one to show.
    pub fn saved(&mut self, path: &Path) {
        self.newest = Some(path.to_path_buf());
        self.tick();
    }

    /// Sends the newest frame if the last upload is done and the gap has passed.
    pub fn tick(&mut self) {
        if let Some(handle) = &mut self.in_flight {
            if handle.now_or_never().is_none() {
                return;
            }
            self.in_flight = None;
        }
        if Instant::now() < self.next_at {
            return;
        }
        if let Some(path) = self.newest.take() {
            self.next_at = Instant::now() + GAP;
            self.in_flight = Some(tokio::spawn(upload(
                self.client.clone(),
                self.task.clone(),
                self.lease.clone(),
                path,
                self.root.clone(),
                self.told.clone(),
            )));
        }
    }

    /// Before the ack (after which the lease no longer takes previews): lets the upload in
    /// flight finish, then sends the last frame if the gap allows it now. Waits at most a few
    /// seconds in all; it never holds the ack back for the gap.
    pub async fn finish(mut self) {
        let wait = Duration::from_secs(5);
        if let Some(handle) = self.in_flight.take() {
            let _ = tokio::time::timeout(wait, handle).await;
        }
        if self.newest.is_some() && Instant::now() >= self.next_at {
            self.tick();
            if let Some(handle) = self.in_flight.take() {
                let _ = tokio::time::timeout(wait, handle).await;
            }
        }
    }
}

/// Set once an undecodable output was logged above debug level.
static UNDECODABLE_TOLD: AtomicBool = AtomicBool::new(false);

async fn upload(
    client: Client,
    task: String,
    lease: String,
    path: PathBuf,
    root: PathBuf,
    told: Arc<AtomicBool>,
) {
    let shown = path.display().to_string();
    let made = tokio::task::spawn_blocking(move || thumbnail(&path, &root)).await;
    let result = match made {
        Ok(Ok(jpeg)) => client
            .preview(&task, &lease, "image/jpeg", jpeg)
            .await
            .map_err(|e| e.report()),
        // A program whose outputs are no images (a `command` writing text) would say this for
        // every frame: once per node run is enough.
        Ok(Err(e @ PreviewError::Decode { .. }))
            if UNDECODABLE_TOLD.swap(true, Ordering::Relaxed) =>
        {
            tracing::debug!(task = %task, error = %report(&e), "no preview");
            return;
        }
        Ok(Err(e)) => Err(report(&e)),
        Err(e) => Err(format!("thumbnail task failed: {e}")),
    };
    match result {
        Ok(PreviewReply::Stored) => {
            tracing::debug!(task = %task, frame = %shown, "preview sent")
        }
        Ok(PreviewReply::Throttled) => {
            tracing::debug!(task = %task, "preview refused for now (429); a later frame goes")
        }
        Err(error) if !told.swap(true, Ordering::Relaxed) => {
            tracing::info!(task = %task, frame = %shown, %error, "no preview for this frame")
        }
        Err(error) => tracing::debug!(task = %task, frame = %shown, %error, "no preview"),
    }
}

fn report(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb32FImage, Rgba};

    fn decode(jpeg: &[u8]) -> RgbImage {
        assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]), "a JPEG");
        image::load_from_memory(jpeg).unwrap().to_rgb8()
    }

    #[test]
    fn a_large_noisy_png_becomes_a_small_jpeg_under_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        // Noise is the worst case for JPEG size.
        let mut seed = 12345u32;
        let img = image::RgbaImage::from_fn(1920, 1080, |_, _| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let [a, b, c, d] = seed.to_le_bytes();
            Rgba([a, b, c, d | 0x80])
        });
        let path = root.join("f_0001.png");
        img.save(&path).unwrap();
        let jpeg = thumbnail(&path, &root).unwrap();
        assert!(jpeg.len() <= MAX_BYTES, "{} bytes", jpeg.len());
        let back = decode(&jpeg);
        assert!(back.width() <= MAX_SIDE && back.height() <= MAX_SIDE);
        assert_eq!(
            back.width() * 1080 / 1920,
            back.height(),
            "aspect ratio kept"
        );
    }

    #[test]
    fn hdr_exr_is_tone_mapped_not_clipped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        // Left half at 0.18 (mid grey), right half at 16 (a bright highlight).
        let img = Rgb32FImage::from_fn(64, 32, |x, _| {
            let v = if x < 32 { 0.18 } else { 16.0 };
            Rgb([v, v, v])
        });
        let path = root.join("f_0001.exr");
        DynamicImage::ImageRgb32F(img).save(&path).unwrap();
        let back = decode(&thumbnail(&path, &root).unwrap());
        let (dark, bright) = (back.get_pixel(8, 16).0[0], back.get_pixel(56, 16).0[0]);
        assert!(
            (90..=130).contains(&dark),
            "0.18 → Reinhard → sRGB ≈ 110, got {dark}"
        );
        assert!(
            (235..=255).contains(&bright) && bright > dark,
            "got {bright}"
        );
    }

    #[test]
    fn a_file_outside_the_output_root_is_not_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("secret.png");
        image::RgbImage::new(4, 4).save(&outside).unwrap();
        let err = thumbnail(&outside, &root.canonicalize().unwrap()).unwrap_err();
        assert!(matches!(err, PreviewError::Outside(_)), "{err}");
    }
}
