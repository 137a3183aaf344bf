//! Rerunning a Blender task keeps the frames an earlier attempt finished (issue 15, item 8),
//! end to end with the real server, real nodes and the real Blender: a node is killed partway
//! through a chunk; the node that takes the task over renders only the frames that are missing,
//! re-renders a frame whose file was cut short mid-write, and renders over frame files left by
//! an older job. A missing Blender fails this test unless EDGEFARM_SKIP_BLENDER=1 is set.

mod node_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use node_support::{blender, blender_running_for, make_scene, png_size, Node, NodeSpec, Server};
use serde_json::json;

fn frame(output: &Path, f: u32) -> PathBuf {
    output.join(format!("shot/frame_{f:04}.png"))
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_renders_only_the_frames_that_are_missing_or_incomplete() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(output.join("shot")).expect("output dir");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    let types = format!("[types.blender]\nprogram = {blender:?}\nthreads = 1\n");
    let spec = |name| NodeSpec {
        name,
        slots: 1,
        project: &project,
        output: &output,
        types: &types,
    };

    // Frames 20-24 from an older job of the same output path: complete, but stale.
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for f in 20..=24 {
        let path = frame(&output, f);
        image::RgbImage::from_pixel(64, 48, image::Rgb([255, 0, 0]))
            .save(&path)
            .expect("stale frame");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(an_hour_ago))
            .expect("age the stale frame");
    }

    let mut doomed = Node::start(&server, spec("doomed"));
    let job = server
        .submit(
            json!({"type": "blender", "frames": "1-24", "chunk_size": 24,
            "params": {"file": "scene.blend", "output": "shot/frame_####", "engine": "CYCLES",
                       "format": "PNG"}}),
        )
        .await;
    // Kill the node once a few frames are on disk, well before the chunk's end.
    let deadline = Instant::now() + Duration::from_secs(180);
    while (1..=19).filter(|&f| frame(&output, f).is_file()).count() < 4 {
        assert!(
            Instant::now() < deadline,
            "the doomed node never rendered 4 frames; log:\n{}",
            doomed.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.signal(libc::SIGKILL);
    doomed.wait_exit(Duration::from_secs(10)).await;
    let out = output.to_string_lossy().into_owned();
    node_support::wait_until(
        "the killed node's Blender is gone",
        Duration::from_secs(10),
        || {
            let out = out.clone();
            async move { !blender_running_for(&out) }
        },
    )
    .await;
    assert!(
        !frame(&output, 19).is_file(),
        "the doomed node got too far for this test to mean anything"
    );

    // The newest complete frame is cut short, as if the kill had come mid-write.
    let mut kept: BTreeMap<u32, SystemTime> = (1..=19)
        .filter(|&f| png_size(&frame(&output, f)) == Some((64, 48)))
        .map(|f| (f, modified(&frame(&output, f))))
        .collect();
    let (&cut, _) = kept.iter().next_back().expect("a complete frame");
    kept.remove(&cut);
    let bytes = std::fs::read(frame(&output, cut)).expect("read");
    std::fs::write(frame(&output, cut), &bytes[..bytes.len() / 2]).expect("cut");

    let rescuer = Node::start(&server, spec("rescuer"));
    server
        .wait_job(&job, "completed", Duration::from_secs(240))
        .await;

    for f in 1..=24 {
        assert_eq!(
            png_size(&frame(&output, f)),
            Some((64, 48)),
            "frame {f} should be a whole 64x48 PNG"
        );
    }
    for (f, before) in &kept {
        assert_eq!(
            modified(&frame(&output, *f)),
            *before,
            "frame {f} was complete before the rerun and must not be rendered again; rescuer log:\n{}",
            rescuer.log()
        );
    }
    for f in 20..=24 {
        assert!(
            modified(&frame(&output, f)) > an_hour_ago + Duration::from_secs(60),
            "frame {f} from an older job must be rendered over"
        );
        let img = image::open(frame(&output, f)).expect("open").to_rgb8();
        assert_ne!(
            img.get_pixel(32, 24).0,
            [255, 0, 0],
            "frame {f} still holds the older job's picture"
        );
    }
    let tasks = server.tasks(&job).await;
    let task = &tasks[0];
    assert_eq!(task["attempts"], 2, "{task:#}");
    let outputs = task["result"]["outputs"].as_array().map(Vec::len);
    assert_eq!(
        outputs,
        Some(24),
        "the result lists every frame, kept ones too: {task:#}"
    );
    let id = task["id"].as_str().unwrap_or_default();
    let client = server.client();
    let log = client
        .send_text(client.request(
            reqwest::Method::GET,
            &format!("/v1/tasks/{id}/log?attempt=2"),
        ))
        .await
        .expect("log");
    assert!(
        log.contains("already rendered"),
        "the rerun's log says what it kept: {log}"
    );
    assert_eq!(
        log.matches("Saved:").count(),
        24 - kept.len(),
        "the rerun saves exactly the frames that were not kept: {log}"
    );
}
