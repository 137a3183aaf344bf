//! Previews end to end with the real Blender (issue 15, item 3): a node sends a thumbnail of the
//! frames it renders, for PNG and for OpenEXR output (tone-mapped), so the dashboard's preview
//! boxes show the last rendered frame. A missing Blender fails these tests unless
//! EDGEFARM_SKIP_BLENDER=1 is set.

mod node_support;

use std::time::Duration;

use node_support::{blender, make_scene, Node, NodeSpec, Server};
use serde_json::json;

/// Renders frames 1-3 of the test scene in `format` and returns the job's preview image.
async fn preview_after_rendering(format: &str) -> Option<(image::RgbImage, String)> {
    let blender = blender()?;
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    let types = format!("[types.blender]\nprogram = {blender:?}\nthreads = 1\n");
    let node = Node::start(
        &server,
        NodeSpec {
            name: "painter",
            slots: 1,
            project: &project,
            output: &output,
            types: &types,
        },
    );
    let job = server
        .submit(json!({"type": "blender", "frames": "1-3", "chunk_size": 3,
            "params": {"file": "scene.blend", "output": "shot/frame_####", "engine": "CYCLES",
                       "format": format}}))
        .await;
    server
        .wait_job(&job, "completed", Duration::from_secs(240))
        .await;
    let client = server.client();
    let resp = client
        .request(reqwest::Method::GET, &format!("/v1/jobs/{job}/preview"))
        .bearer_auth(node_support::SECRET)
        .send()
        .await
        .expect("GET preview");
    assert_eq!(
        resp.status(),
        200,
        "the job should have a preview after its frames rendered; node log:\n{}",
        node.log()
    );
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.expect("preview bytes");
    assert!(bytes.len() <= 120 * 1024, "within the server's size limit");
    let img = image::load_from_memory(&bytes)
        .expect("the preview decodes as an image")
        .to_rgb8();
    let farm = client
        .request(reqwest::Method::GET, "/v1/preview")
        .bearer_auth(node_support::SECRET)
        .send()
        .await
        .expect("GET farm preview");
    assert_eq!(farm.status(), 200, "the farm's last-rendered box too");
    assert!(
        !node.log().contains("WARN"),
        "previews must not produce warnings: {}",
        node.log()
    );
    Some((img, content_type))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_frames_get_a_preview() {
    let Some((img, content_type)) = preview_after_rendering("PNG").await else {
        return;
    };
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(
        (img.width(), img.height()),
        (64, 48),
        "a small frame is sent at its own size"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exr_frames_get_a_tone_mapped_preview() {
    let Some((img, _)) = preview_after_rendering("OPEN_EXR").await else {
        return;
    };
    assert_eq!((img.width(), img.height()), (64, 48));
    let mean = img
        .pixels()
        .map(|p| p.0.iter().map(|&c| c as u64).sum::<u64>())
        .sum::<u64>()
        / (3 * u64::from(img.width() * img.height()));
    assert!(
        (8..=247).contains(&mean),
        "a tone-mapped scene is neither black nor blown out (mean {mean})"
    );
}
