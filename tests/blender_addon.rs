//! The Blender add-on (issue #19), end to end with the real Blender, server, nodes and CLI.
//!
//! A project is made at test time with Blender (tests/fixtures/make_addon_project.py): the shot
//! in proj/shots, a texture in proj/tex by a relative path, one outside the project by an
//! absolute path, and a linked library with its own texture. The add-on is built with
//! scripts/build-blender-addon, installed from its zip into a temporary user-scripts folder,
//! and driven in headless Blender by tests/fixtures/addon_drive.py, which calls
//! `bpy.ops.edgefarm.submit()` and `bpy.ops.edgefarm.test_connection()` (what the buttons run).
//! Two nodes with empty, separate roots render the job. A missing Blender fails these tests
//! unless EDGEFARM_SKIP_BLENDER=1 is set.

mod node_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use node_support::{blender, cli_json, empty_dir, Node, NodeSpec, Server, BIN, SECRET};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Everything a Blender run of the add-on needs: its own user folders and pack cache.
struct Artist {
    blender: PathBuf,
    home: PathBuf,
    shot: PathBuf,
}

impl Artist {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.blender);
        c.env("BLENDER_USER_SCRIPTS", self.home.join("scripts"))
            .env("BLENDER_USER_CONFIG", self.home.join("config"))
            .env("EDGEFARM_PACK_CACHE", self.home.join("pack-cache"))
            .env_remove("EDGEFARM_URL")
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_TOKEN");
        c
    }

    /// Runs the steps in headless Blender on the shot; one answer per step.
    fn drive(&self, steps: Value) -> Vec<Value> {
        let out = self
            .cmd()
            .arg("-b")
            .arg(&self.shot)
            .arg("--python")
            .arg(fixture("addon_drive.py"))
            .arg("--")
            .arg(steps.to_string())
            .output()
            .expect("run blender");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !text.contains("Traceback") && !err.contains("Traceback"),
            "the add-on raised: {text}{err}"
        );
        let answers: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("EDGEFARM_STEP "))
            .map(|l| serde_json::from_str(l).expect("step JSON"))
            .collect();
        assert_eq!(
            answers.len(),
            steps.as_array().map_or(0, Vec::len),
            "one answer per step: {text}{err}"
        );
        answers
    }
}

/// The RGB bytes of a PNG.
fn pixels(path: &Path) -> Vec<u8> {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8()
        .into_raw()
}

async fn job_count(server: &Server) -> usize {
    server.get("/v1/jobs?limit=200").await["jobs"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Renders `job` to completion and fetches frame `f` of it.
async fn frame_of(server: &Server, base: &Path, job: &str, f: u32) -> Vec<u8> {
    server
        .wait_job(job, "completed", Duration::from_secs(240))
        .await;
    let to = base.join(format!("fetched-{job}"));
    cli_json(
        server,
        base,
        &["fetch", job, "--to", to.to_str().expect("utf-8")],
        &[],
    );
    pixels(&to.join(format!("shot/frame_{f:04}.png")))
}

#[tokio::test]
async fn the_addon_packs_uploads_and_submits_a_project_that_renders_on_nodes_without_shared_disk() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();

    // The project, made by Blender.
    let made = Command::new(&blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(fixture("make_addon_project.py"))
        .arg("--")
        .arg(base.join("artist"))
        .output()
        .expect("run blender");
    assert!(
        made.status.success(),
        "making the project failed: {}",
        String::from_utf8_lossy(&made.stdout)
    );
    let proj = base.join("artist/proj");
    let shot = proj.join("shots/shot.blend");
    let shot_bytes = std::fs::read(&shot).expect("shot.blend");

    // The add-on, from the zip the build script makes, installed into a temporary user folder.
    let built =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-blender-addon"))
            .output()
            .expect("run scripts/build-blender-addon");
    assert!(built.status.success(), "build-blender-addon failed");
    let stdout = String::from_utf8_lossy(&built.stdout).into_owned();
    let zip = PathBuf::from(stdout.lines().last().expect("the zip's path, last").trim());
    assert!(
        zip.ends_with("build/edgefarm-blender-addon.zip") && zip.is_file(),
        "{zip:?}"
    );
    let artist = Artist {
        blender: blender.clone(),
        home: base.join("artist-home"),
        shot: shot.clone(),
    };
    let install = format!(
        "import bpy; bpy.ops.preferences.addon_install(filepath={:?})",
        zip.to_str().expect("utf-8")
    );
    let installed = artist
        .cmd()
        .args(["-b", "--factory-startup", "--python-expr", &install])
        .output()
        .expect("install the add-on");
    assert!(installed.status.success());
    assert!(
        artist
            .home
            .join("scripts/addons/edgefarm/__init__.py")
            .is_file()
            && artist
                .home
                .join("scripts/addons/edgefarm/pack.py")
                .is_file(),
        "the zip installs the edgefarm module into the user scripts folder"
    );

    // Nodes with empty, separate roots.
    let types = format!("[types.blender]\nprogram = {blender:?}\nthreads = 1\n");
    let mut nodes = Vec::new();
    for name in ["far-a", "far-b"] {
        let (project, output) = (
            base.join(format!("{name}-project")),
            base.join(format!("{name}-out")),
        );
        std::fs::create_dir_all(&project).expect("project");
        std::fs::create_dir_all(&output).expect("output");
        let node = Node::start(
            &server,
            NodeSpec {
                name,
                slots: 1,
                project: &project,
                output: &output,
                types: &types,
            },
        );
        node.id().await;
        nodes.push((node, project, output));
    }
    // A third machine that only encodes preview videos, its roots empty too.
    let (enc_project, enc_output) = (base.join("far-enc-project"), base.join("far-enc-out"));
    std::fs::create_dir_all(&enc_project).expect("project");
    std::fs::create_dir_all(&enc_output).expect("output");
    let encoder = Node::start(
        &server,
        NodeSpec {
            name: "far-enc",
            slots: 1,
            project: &enc_project,
            output: &enc_output,
            types: "[types.ffmpeg]\nprogram = \"/usr/bin/ffmpeg\"\n",
        },
    );
    encoder.id().await;

    // The artist holds a personal submitter token, never the farm secret.
    let made = cli_json(
        &server,
        &base,
        &[
            "tokens",
            "create",
            "--name",
            "artist",
            "--role",
            "submitter",
        ],
        &[],
    );
    let token = made["token"].as_str().expect("a token").to_string();
    let url = server.url.clone();
    let submit = |extra: Value| {
        let mut step = json!({"op": "submit", "url": url, "token": token, "chunk": 1});
        if let (Some(s), Some(e)) = (step.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        step
    };

    // Test connection: right token, wrong token, nobody listening. Then the first submit and,
    // in the same Blender, the second one of the unchanged project.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let answers = artist.drive(json!([
        {"op": "test", "url": url, "token": token},
        {"op": "test", "url": url, "token": "not-the-token"},
        {"op": "test", "url": format!("http://127.0.0.1:{free}"), "token": token},
        submit(json!({"token": "not-the-token"})),
        submit(json!({"preview_video": true})),
        submit(json!({})),
    ]));
    assert!(
        answers[0]["ok"] == true
            && answers[0]["status"]
                .as_str()
                .unwrap_or("")
                .starts_with("Connected"),
        "{:#}",
        answers[0]
    );
    for (a, says) in [
        (&answers[1], "refused the token"),
        (&answers[2], "connection refused"),
        (&answers[3], "refused the token"),
    ] {
        assert!(a["ok"] == false, "{a:#}");
        assert!(
            a["error"].as_str().unwrap_or("").contains(says),
            "a clear message ({says}): {a:#}"
        );
    }
    assert_eq!(
        job_count(&server).await,
        3,
        "the two good submits made jobs (the first one two: the render and its preview video), the wrong token's none"
    );
    let first = &answers[4];
    assert!(first["ok"] == true, "{first:#}");
    let job = first["job"].as_str().expect("job id").to_string();
    let r = &first["result"];
    assert_eq!(
        r["uploaded_files"], 5,
        "the copy of the shot and its 4 files: {r:#}"
    );
    assert!(r["missing"].as_array().is_some_and(Vec::is_empty), "{r:#}");
    assert!(r["warnings"].as_array().is_some_and(Vec::is_empty), "{r:#}");

    // The preview video: an encode job that waits for the render and takes its frames from the
    // render's outputs (the encoding node shares no disk with anyone).
    let video = r["video_job"].as_str().expect("a video job").to_string();
    let v = server.get(&format!("/v1/jobs/{video}")).await;
    assert_eq!(v["type"], "ffmpeg", "{v:#}");
    assert_eq!(v["after_jobs"], json!([job]), "{v:#}");
    assert_eq!(v["params"]["from_job"], json!(job), "{v:#}");
    assert_eq!(v["params"]["input"], "shot/frame_####.png", "{v:#}");
    assert_eq!(v["params"]["output"], "shot/frame.mp4", "{v:#}");
    assert_eq!(v["submitted_by"]["name"], "artist", "{v:#}");

    // The job: name, frames, chunks.
    let j = server.get(&format!("/v1/jobs/{job}")).await;
    assert_eq!(j["name"], "shot Scene", "file + scene: {j:#}");
    assert_eq!(j["submitted_by"]["name"], "artist", "{j:#}");
    assert_eq!(j["frames"], "1-2");
    assert_eq!(j["chunk_size"], 1);
    assert_eq!(j["counts"]["total"], 2);
    assert_eq!(j["params"]["file"], "shots/shot.blend");

    // The manifest: the shot's copy and all 4 files it needs, laid out as on the artist's disk,
    // the outside texture under _outside/.
    let inputs = server.get(&format!("/v1/jobs/{job}/inputs?cursor=0")).await;
    let mut paths: Vec<String> = inputs["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    paths.sort();
    let outside = format!(
        "_outside/root{}",
        base.join("artist/outside/stamp.png")
            .to_str()
            .expect("utf-8")
    );
    let mut want = vec![
        outside.clone(),
        "lib/lib.blend".to_string(),
        "lib/tex/libtex.png".to_string(),
        "shots/shot.blend".to_string(),
        "tex/wood.png".to_string(),
    ];
    want.sort();
    assert_eq!(paths, want, "{inputs:#}");

    // The second submit of the unchanged project: nothing uploaded, no file read again (the
    // hash cache answered for the 4 files, the shot and its farm copy).
    let second = &answers[5];
    assert!(second["ok"] == true, "{second:#}");
    let r2 = &second["result"];
    assert_eq!(
        (r2["uploaded_bytes"].as_u64(), r2["skipped_files"].as_u64()),
        (Some(0), Some(5)),
        "{r2:#}"
    );
    assert_eq!(r2["cache"]["hashed_files"], 0, "{r2:#}");
    assert_eq!(r2["cache"]["cached_files"], 6, "{r2:#}");
    let job2 = second["job"].as_str().expect("job id").to_string();
    cli_json(&server, &base, &["cancel", &job2], &[]);

    // The CLI packs with the same script: the same manifest, byte for byte, and (sharing the
    // pack cache) nothing hashed or uploaded again.
    let blender_arg = blender.to_str().expect("utf-8").to_string();
    let cli_submit = |extra: &[&str]| {
        let mut args = vec![
            "submit",
            "blender",
            "shots/shot.blend",
            "--upload",
            "--root",
            ".",
            "--frames",
            "1-1",
            "--blender",
            &blender_arg,
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(&proj)
            .env("EDGEFARM_URL", &server.url)
            .env("EDGEFARM_SECRET", SECRET)
            .env("EDGEFARM_PACK_CACHE", artist.home.join("pack-cache"))
            .output()
            .expect("run the CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli_submit(&[]);
    assert!(ok, "{out}{err}");
    let by_cli: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(by_cli["upload"]["files"], 0, "{by_cli:#}");
    assert_eq!(by_cli["upload"]["cache"]["hashed_files"], 0, "{by_cli:#}");
    let cli_job = by_cli["id"].as_str().expect("id").to_string();
    cli_json(&server, &base, &["cancel", &cli_job], &[]);
    let cli_inputs = server
        .get(&format!("/v1/jobs/{cli_job}/inputs?cursor=0"))
        .await;
    assert_eq!(
        cli_inputs["files"], inputs["files"],
        "the CLI's manifest is the add-on's"
    );
    let wood = proj.join("tex/wood.png");
    std::fs::rename(&wood, wood.with_extension("away")).expect("hide");
    let before = job_count(&server).await;
    let (ok, out, err) = cli_submit(&[]);
    std::fs::rename(wood.with_extension("away"), &wood).expect("put back");
    assert!(!ok && err.contains("missing: image 'wood'"), "{out}{err}");
    assert_eq!(
        job_count(&server).await,
        before,
        "the CLI submitted nothing"
    );

    let textured = frame_of(&server, &base, &job, 1).await;
    let _ = frame_of(&server, &base, &job, 2).await;
    server
        .wait_job_explained(&video, "completed", Duration::from_secs(120), || {
            encoder.log()
        })
        .await;
    let clip = base.join("fetched-video");
    cli_json(
        &server,
        &base,
        &["fetch", &video, "--to", clip.to_str().expect("utf-8")],
        &[],
    );
    let stream = node_support::probe(&clip.join("shot/frame.mp4"));
    assert_eq!(
        (
            &stream["codec_name"],
            &stream["nb_read_frames"],
            &stream["r_frame_rate"]
        ),
        (&json!("h264"), &json!("2"), &json!("24/1")),
        "the two frames at the scene's 24 fps: {stream:#}"
    );
    // The panel's "Get preview video": downloaded beside the .blend, the same bytes as the
    // farm's; asked of a job that made no video, it says so.
    let got = artist.drive(json!([
        {"op": "video", "url": url, "token": token, "job": video, "wait": 60},
        {"op": "video", "url": url, "token": token, "job": job, "wait": 0},
    ]));
    assert!(got[0]["ok"] == true, "{:#}", got[0]);
    let path = PathBuf::from(got[0]["video"].as_str().unwrap_or(""));
    assert!(
        path.starts_with(proj.join("shots/edgefarm-previews")),
        "beside the .blend: {path:?}"
    );
    assert_eq!(
        std::fs::read(&path).ok(),
        std::fs::read(clip.join("shot/frame.mp4")).ok(),
        "the add-on's copy is the farm's video"
    );
    assert!(
        got[1]["ok"] == false
            && got[1]["error"]
                .as_str()
                .unwrap_or("")
                .contains("made no video"),
        "{:#}",
        got[1]
    );

    // A missing texture is reported by name and nothing is submitted; confirmed, it renders,
    // and the frame differs from the textured one. Each texture in turn (the library's too).
    for (file, name) in [
        (proj.join("tex/wood.png"), "wood"),
        (base.join("artist/outside/stamp.png"), "stamp"),
        (proj.join("lib/tex/libtex.png"), "libtex"),
    ] {
        let away = file.with_extension("away");
        std::fs::rename(&file, &away).expect("hide the texture");
        let before = job_count(&server).await;
        let a = artist.drive(json!([
            submit(json!({"frames": [1, 1]})),
            submit(json!({"frames": [1, 1], "allow_missing": true})),
        ]));
        std::fs::rename(&away, &file).expect("put the texture back");
        assert!(a[0]["ok"] == false, "{:#}", a[0]);
        let msg = a[0]["error"].as_str().unwrap_or("");
        assert!(
            msg.contains(&format!("'{name}'")) && msg.contains(file.to_str().expect("utf-8")),
            "the missing texture is named: {msg}"
        );
        assert!(a[0]["job"] == "", "{:#}", a[0]);
        assert!(a[1]["ok"] == true, "{:#}", a[1]);
        assert_eq!(
            job_count(&server).await,
            before + 1,
            "only the confirmed submit made a job"
        );
        let bare = a[1]["job"].as_str().expect("job").to_string();
        let frame = frame_of(&server, &base, &bare, 1).await;
        assert_ne!(
            frame, textured,
            "without {name} the frame differs: the texture reached the nodes"
        );
    }

    for (_, project, output) in &nodes {
        assert!(
            empty_dir(project) && empty_dir(output),
            "the nodes' own roots stay empty"
        );
    }
    assert_eq!(
        std::fs::read(&shot).expect("shot.blend"),
        shot_bytes,
        "the artist's .blend is byte-identical"
    );
}
