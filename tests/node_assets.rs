//! Jobs that carry their files, end to end with the real server, nodes, CLI and Blender: a
//! project with a texture linked from a subfolder is submitted with `--upload` from one folder,
//! rendered by two nodes whose roots are empty and separate, and fetched to a third folder.
//! A missing Blender fails these tests unless EDGEFARM_SKIP_BLENDER=1 is set.

mod node_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use node_support::{
    blender, cli_json, empty_dir, make_textured_scene, Node, NodeSpec, Server, BIN, SECRET,
};

/// Distinct colours of a PNG.
fn colours(path: &Path) -> (usize, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    let mut seen = std::collections::HashSet::new();
    for p in img.pixels() {
        seen.insert(p.0);
    }
    (seen.len(), img.into_raw())
}

/// The node that completed each task of `job`, and what that task downloaded.
async fn ran_by(server: &Server, job: &str) -> Vec<(String, u64)> {
    server
        .tasks(job)
        .await
        .iter()
        .map(|t| {
            let node = t["history"]
                .as_array()
                .and_then(|h| h.iter().rev().find(|a| a["outcome"] == "completed"))
                .map(|a| a["node"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            let bytes = t["result"]["transfer"]["downloaded_bytes"]
                .as_u64()
                .unwrap_or(u64::MAX);
            (node, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_project_travels_to_nodes_without_shared_disk_and_its_frames_come_back() {
    let Some(blender) = blender() else { return };
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();
    let submitter = base.join("artist");
    std::fs::create_dir_all(submitter.join("shot")).expect("artist dir");
    make_textured_scene(&blender, &submitter.join("shot/scene.blend"));
    assert!(submitter.join("shot/textures/checker.png").is_file());

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
        let id = node.id().await;
        nodes.push((node, id, project, output));
    }

    let blender_arg = blender.to_string_lossy().into_owned();
    let submit = |cwd: &Path, file: &str| {
        cli_json(
            &server,
            cwd,
            &[
                "submit",
                "blender",
                file,
                "--frames",
                "1-2",
                "--chunk",
                "1",
                "--upload",
                "--blender",
                &blender_arg,
            ],
            &[],
        )
    };
    let submit_allowing_missing = |cwd: &Path, file: &str| {
        cli_json(
            &server,
            cwd,
            &[
                "submit",
                "blender",
                file,
                "--frames",
                "1-2",
                "--chunk",
                "1",
                "--upload",
                "--allow-missing",
                "--blender",
                &blender_arg,
            ],
            &[],
        )
    };
    let first = submit(&submitter, "shot/scene.blend");
    assert_eq!(
        first["upload"]["files"], 2,
        "the .blend (a copy for the farm) and its texture: {first:#}"
    );
    assert_eq!(first["upload"]["skipped_files"], 0);
    let job = first["id"].as_str().expect("job id").to_string();
    server
        .wait_job(&job, "completed", Duration::from_secs(180))
        .await;

    let fetched_to = base.join("fetched");
    let fetched = cli_json(
        &server,
        &base,
        &["fetch", &job, "--to", fetched_to.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(fetched["files"], 2, "both frames come back: {fetched:#}");
    let frame = |dir: &Path, f: u32| dir.join(format!("out/frame_{f:04}.png"));
    let (textured_colours, textured) = colours(&frame(&fetched_to, 1));
    assert!(
        textured_colours > 4,
        "the frame is not one flat colour ({textured_colours})"
    );
    colours(&frame(&fetched_to, 2));
    let again = cli_json(
        &server,
        &base,
        &["fetch", &job, "--to", fetched_to.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(
        (again["files"].as_u64(), again["skipped_files"].as_u64()),
        (Some(0), Some(2)),
        "fetch skips what is there"
    );

    for (_, _, project, output) in &nodes {
        assert!(
            empty_dir(project) && empty_dir(output),
            "the nodes' own roots stay empty"
        );
    }

    // The same shot without its texture renders differently: the texture reached the nodes.
    let bare = base.join("bare");
    std::fs::create_dir_all(&bare).expect("bare");
    std::fs::copy(submitter.join("shot/scene.blend"), bare.join("scene.blend")).expect("copy");
    // The CLI in the untextured project's folder, answering as a person would see it.
    let cli_in_bare = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--blender")
            .arg(&blender)
            .current_dir(&bare)
            .env("EDGEFARM_URL", &server.url)
            .env("EDGEFARM_SECRET", SECRET)
            .env("EDGEFARM_PACK_CACHE", base.join("pack-cache"))
            .output()
            .expect("run the CLI")
    };
    // The pack names the missing texture and refuses; --allow-missing submits anyway.
    let refused = cli_in_bare(&[
        "submit",
        "blender",
        "scene.blend",
        "--frames",
        "1-2",
        "--chunk",
        "1",
        "--upload",
    ]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("missing: image 'checker'"),
        "{said}"
    );
    // A typo in --frames is the farm's error, said before anything is uploaded.
    let notes = format!("notes of the typo check, {job}");
    std::fs::write(bare.join("notes.txt"), &notes).expect("notes");
    let typo = cli_in_bare(&[
        "submit",
        "blender",
        "scene.blend",
        "--frames",
        "8-1",
        "--upload",
        "--allow-missing",
        "--include",
        "notes.txt",
    ]);
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        typo.status.code() == Some(2)
            && said.contains("frames: `8-1`: the range ends before it starts")
            && said.contains("nothing was uploaded"),
        "{:?}: {said}",
        typo.status
    );
    let notes_sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(notes.as_bytes()))
    };
    let missing: serde_json::Value = server
        .client()
        .post_json(
            "/v1/blobs/missing",
            &serde_json::json!({"blobs": [{"sha256": notes_sha, "size": notes.len()}]}),
        )
        .await
        .expect("check");
    assert_eq!(
        missing["missing"].as_array().map(Vec::len),
        Some(1),
        "the refused job's file was not uploaded: {missing:#}"
    );
    std::fs::remove_file(bare.join("notes.txt")).expect("notes");
    let untextured = submit_allowing_missing(&bare, "scene.blend");
    let bare_job = untextured["id"].as_str().expect("id").to_string();
    server
        .wait_job(&bare_job, "completed", Duration::from_secs(180))
        .await;
    let bare_to = base.join("fetched-bare");
    cli_json(
        &server,
        &base,
        &["fetch", &bare_job, "--to", bare_to.to_str().expect("utf-8")],
        &[],
    );
    let (_, plain) = colours(&frame(&bare_to, 1));
    assert_ne!(
        plain, textured,
        "the frame without the texture differs from the textured one"
    );

    // Submitting again uploads nothing; a node that has the files downloads nothing.
    let had_files: Vec<String> = ran_by(&server, &job)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    nodes.retain(|(_, id, _, _)| had_files.contains(id));
    let second = submit(&submitter, "shot/scene.blend");
    assert_eq!(
        second["upload"]["bytes"], 0,
        "nothing new to upload: {second:#}"
    );
    assert_eq!(second["upload"]["skipped_files"], 2);
    let job2 = second["id"].as_str().expect("id").to_string();
    server
        .wait_job(&job2, "completed", Duration::from_secs(180))
        .await;
    for (node, bytes) in ran_by(&server, &job2).await {
        assert_eq!(
            bytes, 0,
            "node {node} had every input cached and downloaded nothing"
        );
    }
    for (node, _, _, _) in &nodes {
        assert!(
            empty_dir(&node.dir.join("state/work")),
            "work dirs are removed after each task"
        );
    }
}

/// Files directly inside `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A file of `mib` MiB of pseudo-random bytes.
fn noise(path: &Path, mib: usize) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut bytes = vec![0u8; mib << 20];
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, bytes).expect("write noise");
}

/// Uploads `file` to the farm (if it lacks it) with the client's own transfer code, as a
/// submitter would before naming it in a job's `inputs`; its hash and size.
async fn put_input(server: &Server, file: &Path) -> (String, u64) {
    let (sha, size) = edgefarm::node::transfer::hash_file(file).expect("hash");
    let transfer = edgefarm::node::transfer::Transfer::new(&server.client()).expect("transfer");
    let entry = edgefarm::core::blobs::FileEntry {
        path: "input".into(),
        sha256: sha.clone(),
        size,
    };
    for blob in transfer
        .missing(&[entry])
        .await
        .expect("which do you lack?")
    {
        transfer
            .upload(file, &blob)
            .await
            .expect("upload the input");
    }
    (sha, size)
}

#[tokio::test]
async fn a_node_killed_mid_download_and_mid_upload_finishes_with_nothing_partial_or_lost() {
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();
    let big = base.join("big.bin");
    noise(&big, 96);
    let (sha, size) = put_input(&server, &big).await;
    let (project, output) = (base.join("n-project"), base.join("n-out"));
    std::fs::create_dir_all(&project).expect("project");
    std::fs::create_dir_all(&output).expect("output");
    let types = "[types.command.programs]\ndd = \"/bin/dd\"\n";
    let spec = NodeSpec {
        name: "victim",
        slots: 1,
        project: &project,
        output: &output,
        types,
    };
    let mut node = Node::start(&server, NodeSpec { ..spec });
    // The output is the input behind 1 MiB of zeros: another blob, which the node must upload.
    let job = server
        .submit(serde_json::json!({"type": "command", "max_attempts": 10,
            "params": {"program": "dd", "args": ["if={project_root}/big.bin", "of={output_root}/out.bin", "bs=1M", "seek=1", "status=none"]},
            "inputs": [{"path": "big.bin", "sha256": sha, "size": size}]}))
        .await;

    let cache_tmp = node.dir.join("state/cache/tmp");
    node_support::wait_until("the node is downloading", Duration::from_secs(60), || {
        let n = files_in(&cache_tmp).len();
        async move { n > 0 }
    })
    .await;
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).await;
    drop(node);
    let mut node = Node::start(
        &server,
        NodeSpec {
            name: "victim",
            slots: 1,
            project: &project,
            output: &output,
            types,
        },
    );

    let server_tmp = base.join("data/blobs/tmp");
    node_support::wait_until(
        "the node is uploading its output",
        Duration::from_secs(120),
        || {
            let n = files_in(&server_tmp).len();
            async move { n > 0 }
        },
    )
    .await;
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).await;
    drop(node);
    let node = Node::start(
        &server,
        NodeSpec {
            name: "victim",
            slots: 1,
            project: &project,
            output: &output,
            types,
        },
    );

    server
        .wait_job(&job, "completed", Duration::from_secs(180))
        .await;
    let task = &server.tasks(&job).await[0];
    assert_eq!(
        task["attempts"], 2,
        "the outputs kept across the restart were acked for the second attempt, not rendered again: {task:#}"
    );
    let fetched = cli_json(
        &server,
        &base,
        &[
            "fetch",
            &job,
            "--to",
            base.join("got").to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(fetched["files"], 1, "the output came back: {fetched:#}");
    let got = std::fs::metadata(base.join("got/out.bin"))
        .expect("out.bin")
        .len();
    assert_eq!(got, size + (1 << 20), "the whole output, verified by fetch");
    assert!(
        files_in(&node.dir.join("state/cache/tmp")).is_empty(),
        "no partial file in the cache"
    );
    let cached = node.dir.join(format!("state/cache/{}/{sha}", &sha[..2]));
    assert_eq!(
        edgefarm::node::transfer::hash_file(&cached).expect("cached input"),
        (sha.clone(), size),
        "the cached input is whole"
    );
    assert!(
        files_in(&server_tmp).is_empty(),
        "no partial upload left on the server"
    );
    assert!(
        empty_dir(&node.dir.join("state/work")),
        "work dirs are removed"
    );

    // A cache entry that rotted on disk is dropped and fetched again, never used.
    let mut perms = std::fs::metadata(&cached).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&cached, perms).expect("chmod");
    std::fs::write(&cached, b"rotten").expect("corrupt the entry");
    let again = server
        .submit(serde_json::json!({"type": "command",
            "params": {"program": "dd", "args": ["if={project_root}/big.bin", "of={output_root}/out.bin", "bs=1M", "seek=1", "status=none"]},
            "inputs": [{"path": "big.bin", "sha256": sha, "size": size}]}))
        .await;
    server
        .wait_job(&again, "completed", Duration::from_secs(180))
        .await;
    let task = &server.tasks(&again).await[0];
    assert_eq!(
        task["result"]["transfer"]["downloaded_files"], 1,
        "the rotten entry was fetched again: {task:#}"
    );
    assert_eq!(
        edgefarm::node::transfer::hash_file(&cached).expect("cached input"),
        (sha.clone(), size),
        "the cache holds the right bytes again"
    );
}

#[tokio::test]
async fn a_restarted_node_removes_the_work_dir_of_a_task_it_was_killed_in() {
    let server = Server::start().await;
    let base = server.dir.path().to_path_buf();
    let input = base.join("scene.txt");
    std::fs::write(&input, b"a small input, so the task has a work dir").expect("input");
    let (sha, size) = put_input(&server, &input).await;
    let (project, output) = (base.join("n-project"), base.join("n-out"));
    std::fs::create_dir_all(&project).expect("project");
    std::fs::create_dir_all(&output).expect("output");
    let types = "[types.command.programs]\nsleep = \"/bin/sleep\"\n";
    let spec = || NodeSpec {
        name: "killed",
        slots: 1,
        project: &project,
        output: &output,
        types,
    };
    let mut node = Node::start(&server, spec());
    let job = server
        .submit(serde_json::json!({"type": "command",
            "params": {"program": "sleep", "args": ["600"]},
            "inputs": [{"path": "scene.txt", "sha256": sha, "size": size}]}))
        .await;
    let work = node.dir.join("state/work");
    server
        .wait_job(&job, "active", Duration::from_secs(60))
        .await;
    node_support::wait_until("the task has its work dir", Duration::from_secs(60), || {
        let n = files_in(&work).len();
        async move { n > 0 }
    })
    .await;
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).await;
    drop(node);
    // Nobody takes the task again, so only the restart itself can clear the dir.
    let c = server.client();
    let _: serde_json::Value = c
        .post_json(&format!("/v1/jobs/{job}/cancel"), &serde_json::json!({}))
        .await
        .expect("cancel");
    assert_eq!(files_in(&work).len(), 1, "the killed run left its work dir");
    let node = Node::start(&server, spec());
    node.id().await;
    node_support::wait_until(
        "the restarted node removes the unfinished task's work dir and says so",
        Duration::from_secs(60),
        || {
            let done = empty_dir(&work) && node.log().contains("did not finish");
            async move { done }
        },
    )
    .await;
}
