//! A per-frame dependent job end to end, with the real server, the real Blender and two real
//! nodes: a comp of frame 1 runs while the render is still rendering its last frame, and each
//! comp task runs only after its own frame was rendered.
//!
//! The order is made certain, not likely: the render node's Blender (a wrapper around the real
//! one) waits before it renders frame 3 until a gate file exists, and the comp's program creates
//! that file. So frame 3 can only end after a comp task started; had the comp waited for the
//! whole render (or never been released), the gate would stay shut and the test fail.

mod node_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use node_support::{blender, make_scene, png_size, Node, NodeSpec, Server};
use serde_json::{json, Value};

/// `(started, ended)` of a task's last attempt, ms.
fn times(t: &Value) -> (u64, u64) {
    let h = t["history"].as_array().cloned().unwrap_or_default();
    let last = h.last().cloned().unwrap_or(Value::Null);
    (
        last["started_ms"].as_u64().unwrap_or(u64::MAX),
        last["ended_ms"].as_u64().unwrap_or(u64::MAX),
    )
}

fn first_frame(t: &Value) -> i64 {
    t["frames"]["from"].as_i64().unwrap_or(-1)
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_comp_of_frame_1_runs_before_the_render_has_ended() {
    let Some(real_blender) = blender() else {
        return;
    };
    let server = Server::start().await;
    let work = server.dir.path().to_path_buf();
    let project = work.join("project");
    let output = work.join("renders");
    std::fs::create_dir_all(&project).expect("project dir");
    std::fs::create_dir_all(&output).expect("output dir");
    make_scene(&real_blender, &project);
    let gate = work.join("gate");
    // The node clears the environment of what it runs: paths are written into the scripts.
    let gated_blender = work.join("gated-blender.sh");
    script(
        &gated_blender,
        &format!(
            "#!/bin/sh\n# Blender, but the task starting at frame 3 first waits for the gate (at most 2 min: then frame 3 fails, and so does the test).\n\
             prev=\"\"\nfor a in \"$@\"; do\n  if [ \"$prev\" = \"-s\" ] && [ \"$a\" = \"3\" ]; then\n    n=0\n    \
             while [ ! -e {gate:?} ]; do n=$((n+1)); if [ $n -gt 1200 ]; then echo 'gate never opened' >&2; exit 3; fi; sleep 0.1; done\n  \
             fi\n  prev=\"$a\"\ndone\nexec {real_blender:?} \"$@\"\n"
        ),
    );
    let check = work.join("check-frame.sh");
    script(
        &check,
        &format!(
            "#!/bin/sh\n# The comp of one frame: its rendered image must exist; then it opens the gate.\n\
             f=$(printf '%s/shot/frame_%04d.png' \"$1\" \"$2\")\n\
             if [ ! -s \"$f\" ]; then echo \"frame $2 is not rendered: $f\" >&2; exit 1; fi\n\
             echo \"comp of frame $2 found $f\"\ntouch {gate:?}\n"
        ),
    );
    let render_node = Node::start(
        &server,
        NodeSpec {
            name: "render-a",
            slots: 1,
            project: &project,
            output: &output,
            types: &format!("[types.blender]\nprogram = {gated_blender:?}\nthreads = 1\n"),
        },
    );
    let comp_node = Node::start(
        &server,
        NodeSpec {
            name: "comp-b",
            slots: 1,
            project: &project,
            output: &output,
            types: &format!("[types.command.programs]\ncheck = {check:?}\n"),
        },
    );
    let explain = || {
        format!(
            "render node:\n{}\ncomp node:\n{}",
            render_node.log(),
            comp_node.log()
        )
    };

    let render = server
        .submit(
            json!({"id": "render1", "type": "blender", "frames": "1-3", "chunk_size": 1, "max_attempts": 1,
            "params": {"file": "scene.blend", "output": "shot/frame_####", "engine": "CYCLES"}}),
        )
        .await;
    // `submit command` takes the program's arguments after `--`, so `--json` goes before.
    let out = std::process::Command::new(node_support::BIN)
        .args([
            "submit",
            "command",
            "check",
            "--json",
            "--frames",
            "1-3",
            "--chunk",
            "1",
            "--after",
            &render,
            "--per-frame",
            "--id",
            "comp1",
            "--",
            "{output_root}",
            "{frame}",
        ])
        .current_dir(&project)
        .env("EDGEFARM_URL", &server.url)
        .env("EDGEFARM_SECRET", node_support::SECRET)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let comp: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("frame by frame"),
        "the CLI says how it waits: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(comp["after_frames"], true, "{comp:#}");
    assert_eq!(comp["after_jobs"], json!([render]));

    // The render first, without reading the comp meanwhile: `GET /v1/jobs/comp1` would also
    // release what is rendered (it finishes releases a crash cut short), and this test is about
    // the release by the render's acks.
    server
        .wait_job_explained("render1", "completed", Duration::from_secs(600), &explain)
        .await;
    server
        .wait_job_explained("comp1", "completed", Duration::from_secs(120), &explain)
        .await;
    for f in 1..=3 {
        let png = output.join(format!("shot/frame_{f:04}.png"));
        assert_eq!(png_size(&png), Some((64, 48)), "{}", png.display());
    }

    let renders = server.tasks("render1").await;
    let comps = server.tasks("comp1").await;
    assert_eq!((renders.len(), comps.len()), (3, 3));
    let render_end = |frame: i64| {
        renders
            .iter()
            .find(|t| first_frame(t) == frame)
            .map_or(u64::MAX, |t| times(t).1)
    };
    let last_render_end = (1..=3).map(render_end).max().unwrap_or(u64::MAX);
    let comp_1 = comps
        .iter()
        .find(|t| first_frame(t) == 1)
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        times(&comp_1).0 < last_render_end,
        "the comp of frame 1 started at {} before the render ended at {last_render_end}: {comp_1:#}",
        times(&comp_1).0
    );
    for t in &comps {
        let frame = first_frame(t);
        let (start, _) = times(t);
        assert!(
            start >= render_end(frame),
            "the comp of frame {frame} started at {start}, after its frame was rendered at {}",
            render_end(frame)
        );
        assert_eq!(t["state"], "completed", "{t:#}");
    }
}
