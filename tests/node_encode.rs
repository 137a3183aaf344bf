//! A preview video after the frames, end to end with the real server, the real Blender and the
//! real FFmpeg: `submit blender ... --preview-video` renders on one node and a second node
//! (FFmpeg only, the same output storage) encodes the frames once the render has completed;
//! ffprobe reads the video. A failed render cancels its encode; bad encode jobs are refused
//! with the field named, and nothing is stored.

mod node_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use node_support::{
    blender, cli_json, ffmpeg, make_scene, probe, Node, NodeSpec, Server, BIN, SECRET,
};
use serde_json::{json, Value};

fn task_times(tasks: &[Value]) -> Vec<(u64, u64)> {
    tasks
        .iter()
        .map(|t| {
            let last = &t["history"][t["history"]
                .as_array()
                .map_or(0, Vec::len)
                .saturating_sub(1)];
            (
                last["started_ms"].as_u64().unwrap_or(0),
                last["ended_ms"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// A render node (Blender) and an encode node (FFmpeg only), each with its (project, output)
/// roots.
struct Pair {
    renderer: Node,
    encoder: Node,
}

impl Pair {
    fn start(server: &Server, names: [&str; 2], render: [&Path; 2], encode: [&Path; 2]) -> Pair {
        let blender = blender().expect("checked by the caller");
        let start = |name: &str, [project, output]: [&Path; 2], types: String| {
            Node::start(
                server,
                NodeSpec {
                    name,
                    slots: 1,
                    project,
                    output,
                    types: &types,
                },
            )
        };
        Pair {
            renderer: start(
                names[0],
                render,
                format!("[types.blender]\nprogram = {blender:?}\nthreads = 1\n"),
            ),
            encoder: start(
                names[1],
                encode,
                format!("[types.ffmpeg]\nprogram = {:?}\n", ffmpeg()),
            ),
        }
    }

    /// Both nodes' logs, for a failure's message.
    fn logs(&self) -> String {
        format!(
            "render node:\n{}\nencode node:\n{}",
            self.renderer.log(),
            self.encoder.log()
        )
    }
}

/// Waits for shot1's video to complete, and checks that its (last) encode began only after
/// every render task's last attempt had ended. Returns the encode tasks.
async fn encoded_after_the_render(server: &Server, explain: &dyn Fn() -> String) -> Vec<Value> {
    server
        .wait_job_explained(
            "shot1-video",
            "completed",
            Duration::from_secs(300),
            explain,
        )
        .await;
    let render_end = task_times(&server.tasks("shot1").await)
        .into_iter()
        .map(|(_, end)| end)
        .max()
        .expect("render tasks");
    let encode_tasks = server.tasks("shot1-video").await;
    let (encode_start, _) = task_times(&encode_tasks)[0];
    assert!(
        encode_start >= render_end,
        "the encode began at {encode_start}, before the render ended at {render_end}"
    );
    encode_tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_video_is_encoded_after_the_render() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    let pair = Pair::start(
        &server,
        ["render-a", "encode-b"],
        [&project, &output],
        [&project, &output],
    );
    let explain = || pair.logs();

    let submitted = cli_json(
        &server,
        &project,
        &[
            "submit",
            "blender",
            "scene.blend",
            "--output",
            "shot/frame_####",
            "--frames",
            "1-24",
            "--chunk",
            "12",
            "--preview-video",
            "--fps",
            "24",
            "--id",
            "shot1",
        ],
        &[],
    );
    assert_eq!(submitted["id"], "shot1", "{submitted:#}");
    let video_job = &submitted["video_job"];
    assert_eq!(video_job["id"], "shot1-video", "{submitted:#}");
    assert_eq!(video_job["type"], "ffmpeg");
    assert_eq!(video_job["after_jobs"], json!(["shot1"]));
    assert_eq!(video_job["params"]["input"], "shot/frame_####.png");
    assert_eq!(video_job["params"]["output"], "shot/frame.mp4");

    let encode_tasks = encoded_after_the_render(&server, &explain).await;
    assert_eq!(server.get("/v1/jobs/shot1").await["state"], "completed");
    assert_eq!(encode_tasks.len(), 1, "one encode task: {encode_tasks:#?}");
    let encode = &encode_tasks[0];
    let encoder_id = pair.encoder.id().await;
    assert_eq!(encode["history"][0]["node"], encoder_id.as_str());
    assert_eq!(encode["progress"]["done"], 24, "{encode:#}");
    assert_eq!(
        encode["result"]["outputs"],
        json!(["shot/frame.mp4"]),
        "{encode:#}"
    );

    let video = output.join("shot/frame.mp4");
    assert!(
        !output.join("shot/.frame.mp4.partial").exists(),
        "FFmpeg wrote beside the video and the node moved it into place"
    );
    let stream = probe(&video);
    assert_eq!(stream["codec_name"], "h264", "{stream:#}");
    assert_eq!(stream["width"], 64, "{stream:#}");
    assert_eq!(stream["height"], 48, "{stream:#}");
    assert_eq!(stream["r_frame_rate"], "24/1", "{stream:#}");
    assert_eq!(stream["nb_read_frames"], "24", "{stream:#}");
    assert_eq!(stream["pix_fmt"], "yuv420p", "{stream:#}");

    // The scene is fixed and the render requeued: the video waits for the new frames and is
    // encoded again from them (not left as it was, nor encoded from a mix).
    // (The nodes are running: what the jobs read right after the requeue depends on how fast
    // they are, so only the order of the attempts is asserted. The conformance suite asserts
    // the waiting state itself, with no node to race it.)
    let requeued = cli_json(&server, &project, &["requeue", "shot1"], &[]);
    assert_eq!(requeued["id"], "shot1", "{requeued:#}");
    let encode_tasks = encoded_after_the_render(&server, &explain).await;
    assert_eq!(
        encode_tasks[0]["attempts"], 2,
        "encoded twice: {:#}",
        encode_tasks[0]
    );
    assert_eq!(probe(&video)["nb_read_frames"], "24");

    // The same frames again, by hand with `submit ffmpeg`, at another frame rate.
    let again = cli_json(
        &server,
        &project,
        &[
            "submit",
            "ffmpeg",
            "shot/frame_####.png",
            "--output",
            "shot/slow.mp4",
            "--frames",
            "1-24",
            "--fps",
            "12",
            "--id",
            "slow",
        ],
        &[],
    );
    assert_eq!(
        (&again["type"], &again["chunk_size"]),
        (&json!("ffmpeg"), &json!(24))
    );
    server
        .wait_job("slow", "completed", Duration::from_secs(120))
        .await;
    let slow = probe(&output.join("shot/slow.mp4"));
    assert_eq!(
        (&slow["r_frame_rate"], &slow["nb_read_frames"]),
        (&json!("12/1"), &json!("24")),
        "{slow:#}"
    );

    // A render that fails cancels its encode; the encode never runs.
    let broken = cli_json(
        &server,
        &project,
        &[
            "submit",
            "blender",
            "missing.blend",
            "--output",
            "bad/f_####",
            "--frames",
            "1-3",
            "--max-attempts",
            "1",
            "--preview-video",
            "--id",
            "bad1",
        ],
        &[],
    );
    assert_eq!(broken["video_job"]["id"], "bad1-video");
    let failed = server
        .wait_job("bad1", "failed", Duration::from_secs(120))
        .await;
    let why = failed["error"].as_str().unwrap_or("");
    assert!(
        why.contains("params.file \"missing.blend\" cannot be opened under the project root")
            && why.contains("or submit with --upload so the job carries its files"),
        "a file missing on the node names the way out: {why}"
    );
    let canceled = server
        .wait_job("bad1-video", "canceled", Duration::from_secs(60))
        .await;
    let tasks = server.tasks("bad1-video").await;
    assert!(
        tasks
            .iter()
            .all(|t| t["history"].as_array().is_none_or(Vec::is_empty)),
        "the encode of a failed render never ran: {canceled:#}\n{tasks:#?}"
    );
    assert!(!output.join("bad/f.mp4").exists());
}

/// Nodes that share no disk: the render carries its files (`--upload`), the encoding node
/// (another machine, its own empty roots) downloads the rendered frames from the farm and
/// uploads the video, and `edgefarm fetch` brings the video back to the submitter.
#[tokio::test(flavor = "multi_thread")]
async fn preview_video_of_an_uploaded_render_comes_back_by_fetch() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();
    let project = base.join("artist");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    let roots = |name: &str| {
        let (p, o) = (
            base.join(format!("{name}-project")),
            base.join(format!("{name}-out")),
        );
        std::fs::create_dir_all(&p).expect("root");
        std::fs::create_dir_all(&o).expect("root");
        (p, o)
    };
    let (render_project, render_out) = roots("render");
    let (encode_project, encode_out) = roots("encode");
    let pair = Pair::start(
        &server,
        ["far-render", "far-encode"],
        [&render_project, &render_out],
        [&encode_project, &encode_out],
    );
    let explain = || pair.logs();
    let submitted = cli_json(
        &server,
        &project,
        &[
            "submit",
            "blender",
            "scene.blend",
            "--upload",
            "--output",
            "shot/frame_####",
            "--frames",
            "1-12",
            "--chunk",
            "6",
            "--preview-video",
            "--id",
            "far1",
        ],
        &[],
    );
    assert_eq!(
        submitted["video_job"]["params"]["from_job"], "far1",
        "{submitted:#}"
    );
    server
        .wait_job_explained("far1-video", "completed", Duration::from_secs(300), explain)
        .await;
    let encode = &server.tasks("far1-video").await[0];
    let transfer = &encode["result"]["transfer"];
    assert_eq!(
        transfer["downloaded_files"], 12,
        "the 12 frames came from the farm: {encode:#}"
    );
    assert_eq!(
        transfer["uploaded_files"], 1,
        "the video went to the farm: {encode:#}"
    );
    let outputs = server.get("/v1/jobs/far1-video/outputs").await;
    let paths: Vec<&str> = outputs["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["path"].as_str())
        .collect();
    assert_eq!(paths, ["shot/frame.mp4"], "{outputs:#}");

    // An encode of part of the render gets only those frames (3 of the 12 outputs).
    let part = server
        .submit(json!({"id": "far1-part", "type": "ffmpeg", "frames": "3-5", "after_jobs": ["far1"],
            "params": {"input": "shot/frame_####.png", "output": "shot/part.mp4", "from_job": "far1"}}))
        .await;
    server
        .wait_job_explained(&part, "completed", Duration::from_secs(120), || pair.logs())
        .await;
    let part_task = &server.tasks(&part).await[0];
    let moved = &part_task["result"]["transfer"];
    assert_eq!(
        moved["downloaded_files"].as_u64().unwrap_or(0)
            + moved["cached_files"].as_u64().unwrap_or(0),
        3,
        "frames 3-5 only: {part_task:#}"
    );

    let back = base.join("back");
    let fetched = cli_json(
        &server,
        &project,
        &["fetch", "far1-video", "--to", back.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(fetched["files"], 1, "{fetched:#}");
    let stream = probe(&back.join("shot/frame.mp4"));
    assert_eq!(stream["codec_name"], "h264", "{stream:#}");
    assert_eq!(stream["nb_read_frames"], "12", "{stream:#}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(64), Some(48))
    );
    // Nothing was left on the encoding machine's roots (the work dir is its own and removed).
    for dir in [&encode_project, &encode_out] {
        assert!(
            node_support::empty_dir(dir),
            "{} is not empty",
            dir.display()
        );
    }
}

/// One machine that renders and encodes, sharing no disk with the submitter: the frames it
/// rendered and uploaded stay in its content cache, so the encode downloads nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_that_rendered_the_frames_encodes_them_without_downloading() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();
    let project = base.join("artist");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    let (root, out) = (base.join("solo-project"), base.join("solo-out"));
    std::fs::create_dir_all(&root).expect("root");
    let types = format!(
        "[types.blender]\nprogram = {blender:?}\nthreads = 1\n[types.ffmpeg]\nprogram = {:?}\n",
        ffmpeg()
    );
    let node = Node::start(
        &server,
        NodeSpec {
            name: "solo",
            slots: 1,
            project: &root,
            output: &out,
            types: &types,
        },
    );
    cli_json(
        &server,
        &project,
        &[
            "submit",
            "blender",
            "scene.blend",
            "--upload",
            "--output",
            "shot/frame_####",
            "--frames",
            "1-6",
            "--chunk",
            "3",
            "--preview-video",
            "--id",
            "solo1",
        ],
        &[],
    );
    server
        .wait_job_explained("solo1-video", "completed", Duration::from_secs(300), || {
            node.log()
        })
        .await;
    let encode = &server.tasks("solo1-video").await[0];
    let moved = &encode["result"]["transfer"];
    assert_eq!(
        (
            moved["downloaded_files"].as_u64(),
            moved["cached_files"].as_u64()
        ),
        (Some(0), Some(6)),
        "the 6 frames came from this node's cache: {encode:#}"
    );
    assert_eq!(moved["uploaded_files"], 1, "{encode:#}");
}

/// Mean luma (0-255) of a video's first frame, by FFmpeg's signalstats filter.
fn mean_luma(video: &Path) -> f64 {
    let out = Command::new(ffmpeg())
        .args(["-v", "info", "-i"])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "signalstats,metadata=print",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    let text = String::from_utf8_lossy(&out.stderr);
    text.split("lavfi.signalstats.YAVG=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no YAVG for {}: {text}", video.display()))
}

/// Blender's OpenEXR frames are scene-linear; the encode applies the sRGB curve, so their video
/// is about as bright as the one of the same frames saved as PNG (as stored: about 40 %).
#[tokio::test(flavor = "multi_thread")]
async fn exr_frames_make_a_video_as_bright_as_png_frames() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    for (format, dir) in [("PNG", "png"), ("OPEN_EXR", "exr")] {
        let rendered = Command::new(&blender)
            .arg("-b")
            .arg(project.join("scene.blend"))
            .arg("-o")
            .arg(output.join(format!("{dir}/f_####")))
            .args(["-F", format, "-s", "1", "-e", "2", "-a"])
            .output()
            .expect("run blender");
        assert!(rendered.status.success(), "blender -F {format}");
    }
    let types = format!("[types.ffmpeg]\nprogram = {:?}\n", ffmpeg());
    let node = Node::start(
        &server,
        NodeSpec {
            name: "enc",
            slots: 1,
            project: &project,
            output: &output,
            types: &types,
        },
    );
    for ext in ["png", "exr"] {
        let id = server
            .submit(json!({"id": ext, "type": "ffmpeg", "frames": "1-2",
                "params": {"input": format!("{ext}/f_####.{ext}"), "output": format!("{ext}.mp4")}}))
            .await;
        server
            .wait_job_explained(&id, "completed", Duration::from_secs(60), || node.log())
            .await;
    }
    let (png, exr) = (
        mean_luma(&output.join("png.mp4")),
        mean_luma(&output.join("exr.mp4")),
    );
    assert!(
        (0.8..1.25).contains(&(exr / png)),
        "mean luma: EXR video {exr}, PNG video {png}"
    );
}

/// An encode whose frames are not all there fails naming the missing frame (FFmpeg alone would
/// stop at the gap, exit 0 and leave a short video).
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_frame_fails_the_encode_by_name() {
    let ffmpeg = ffmpeg();
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::create_dir_all(output.join("s")).expect("frames dir");
    for f in [1, 2, 4] {
        std::fs::write(output.join(format!("s/f_{f:04}.png")), b"not really a png").expect("frame");
    }
    let types = format!("[types.ffmpeg]\nprogram = {ffmpeg:?}\n");
    let node = Node::start(
        &server,
        NodeSpec {
            name: "enc",
            slots: 1,
            project: &project,
            output: &output,
            types: &types,
        },
    );
    let id = server
        .submit(
            json!({"id": "gap", "type": "ffmpeg", "frames": "1-4", "max_attempts": 1,
            "params": {"input": "s/f_####.png", "output": "s/f.mp4", "fps": 25}}),
        )
        .await;
    server
        .wait_job_explained(&id, "failed", Duration::from_secs(60), || node.log())
        .await;
    let task = &server.tasks(&id).await[0];
    let error = task["history"][0]["outcome"].to_string() + &task["error"].to_string();
    assert!(error.contains("frame 3 is missing"), "{task:#}");
    assert!(!output.join("s/f.mp4").exists());
}

/// Encode jobs the server refuses: the field named, nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn bad_encode_jobs_are_refused_naming_the_field() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let base = json!({"type": "ffmpeg", "frames": "1-24",
        "params": {"input": "shot/frame_####.png", "output": "shot/frame.mp4", "fps": 24}});
    let with = |path: &[&str], v: Value| {
        let mut spec = base.clone();
        let mut at = &mut spec;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        spec
    };
    let cases = [
        (with(&["frames"], json!("1-24x2")), "frames"),
        (with(&["frames"], json!("1-5,8-9")), "frames"),
        (with(&["chunk_size"], json!(10)), "chunk_size"),
        (
            with(&["params", "output"], json!("shot/frame.mov")),
            "params.output",
        ),
        (
            with(&["params", "output"], json!("../frame.mp4")),
            "params.output",
        ),
        (
            with(&["params", "input"], json!("shot/frame.png")),
            "params.input",
        ),
        (
            with(&["params", "input"], json!("shot/frame_####.psd")),
            "params.input",
        ),
        (
            with(&["params", "input"], json!("/abs/frame_####.png")),
            "params.input",
        ),
        (with(&["params", "fps"], json!(0)), "params.fps"),
        (with(&["params", "fps"], json!("24")), "params.fps"),
        (with(&["params", "codec"], json!("x")), "params.codec"),
        (
            with(&["params", "from_job"], json!("render1")),
            "params.from_job",
        ),
        (with(&["params", "from_job"], json!(7)), "params.from_job"),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let mut spec = spec;
        spec["id"] = json!(format!("bad{i}"));
        let r = http
            .post(format!("{}/v1/jobs", server.url))
            .bearer_auth(SECRET)
            .json(&spec)
            .send()
            .await
            .expect("POST /v1/jobs");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{spec}: {body}");
        assert_eq!(body["error"]["field"], field, "{spec}: {body}");
        let r = http
            .get(format!("{}/v1/jobs/bad{i}", server.url))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 404, "nothing stored for {spec}");
    }
    assert_eq!(server.get("/v1/jobs").await["jobs"], json!([]));

    // The CLI refuses what it cannot encode before submitting anything.
    for args in [
        vec!["--frames", "1-10x2"],
        vec![],
        vec!["--frames", "1-10", "--format", "FFMPEG"],
    ] {
        let out = Command::new(BIN)
            .args(["submit", "blender", "scene.blend", "--preview-video"])
            .args(&args)
            .args(["--url", &server.url, "--secret", SECRET])
            .output()
            .expect("run the CLI");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--preview-video"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(server.get("/v1/jobs").await["jobs"], json!([]));

    // A feature-length preview is still one task (over the usual chunk_size bound of 100,000).
    let film = server
        .submit(json!({"id": "film", "type": "ffmpeg", "frames": "1-172800",
            "params": {"input": "film/f_######.png", "output": "film/preview.mp4"}}))
        .await;
    let j = server.get(&format!("/v1/jobs/{film}")).await;
    assert_eq!(j["counts"]["total"], 1, "{j:#}");
    assert_eq!(j["chunk_size"], 172800, "{j:#}");
}
