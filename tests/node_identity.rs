//! A node's identity end to end (issue 15, item 5): the default state dir is per user, not the
//! working directory; two nodes on one state dir cannot share an identity (the second stops at
//! once and names the fix); and a new `--name` renames the node.

mod node_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node_support::{wait_until, Server, BIN, SECRET};
use serde_json::Value;

/// `edgefarm node` from flags only, in `cwd`, with `HOME` = `home`; `state_dir` if given.
fn node(
    server: &Server,
    name: &str,
    cwd: &Path,
    home: &Path,
    state_dir: Option<&Path>,
) -> (Child, PathBuf) {
    node_with(server, SECRET, name, cwd, home, state_dir)
}

/// [`node`] enrolling with `credential` (the farm secret or a node-join token).
fn node_with(
    server: &Server,
    credential: &str,
    name: &str,
    cwd: &Path,
    home: &Path,
    state_dir: Option<&Path>,
) -> (Child, PathBuf) {
    let out = cwd.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let log = cwd.join(format!("{name}.log"));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "node",
        "--url",
        &server.url,
        "--secret",
        credential,
        "--name",
        name,
    ])
    .arg("--project-root")
    .arg(cwd)
    .arg("--output-root")
    .arg(&out)
    .args(["--program", "ok=/bin/true"])
    .current_dir(cwd)
    .env("HOME", home)
    .env("EDGEFARM_LOG", "info")
    .env_remove("XDG_STATE_HOME")
    .env_remove("EDGEFARM_STATE_DIR")
    .env_remove("EDGEFARM_SECRET")
    .env_remove("EDGEFARM_URL")
    .env_remove("EDGEFARM_NODE_CONFIG")
    .env_remove("EDGEFARM_NODE_TOKEN")
    .env_remove("EDGEFARM_NODE_NAME")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("log"));
    if let Some(dir) = state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    (cmd.spawn().expect("start edgefarm node"), log)
}

async fn exit_code(child: &mut Child, within: Duration, log: &Path) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node did not exit in time; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn node_names(server: &Server) -> Vec<String> {
    server.get("/v1/nodes").await["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_state_dir_is_per_user_not_the_working_directory() {
    let server = Server::start().await;
    let (cwd, home) = (
        server.dir.path().join("cwd"),
        server.dir.path().join("home"),
    );
    std::fs::create_dir_all(&cwd).expect("cwd");
    std::fs::create_dir_all(&home).expect("home");
    let (mut child, log) = node(&server, "solo", &cwd, &home, None);
    let state = home.join(".local/state/edgefarm/node/node.json");
    wait_until(
        "the node saves its identity under ~/.local/state",
        Duration::from_secs(30),
        || async { state.is_file() },
    )
    .await;
    stop(&mut child);
    assert!(
        !cwd.join("edgefarm-node").exists(),
        "nothing may be kept in the working directory; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_state_dir_exits_at_once_naming_the_fix() {
    let server = Server::start().await;
    let dir = server.dir.path().join("shared");
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state");
    let (mut first, _) = node(&server, "first", &dir, &dir, Some(&state));
    wait_until("the first node enrols", Duration::from_secs(30), || async {
        state.join("node.json").is_file()
    })
    .await;
    let (mut second, log) = node(&server, "second", &dir, &dir, Some(&state));
    let code = exit_code(&mut second, Duration::from_secs(20), &log).await;
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        code,
        Some(2),
        "a configuration problem: exit 2; log:\n{err}"
    );
    assert!(
        err.contains("--state-dir") && err.contains(&state.display().to_string()),
        "the message should name the state dir and the fix: {err}"
    );
    assert!(
        first.try_wait().expect("try_wait").is_none(),
        "the first node keeps running"
    );
    stop(&mut first);
    assert_eq!(
        node_names(&server).await,
        vec!["first".to_string()],
        "the second node must not have enrolled or renamed anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_name_renames_the_node() {
    let server = Server::start().await;
    let dir = server.dir.path().join("box");
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state");
    let (mut child, _) = node(&server, "alpha", &dir, &dir, Some(&state));
    wait_until("alpha enrols", Duration::from_secs(30), || async {
        state.join("node.json").is_file()
    })
    .await;
    stop(&mut child);
    assert_eq!(node_names(&server).await, vec!["alpha".to_string()]);

    let (mut child, log) = node(&server, "beta", &dir, &dir, Some(&state));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = node_names(&server).await;
        if names == vec!["beta".to_string()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node should now be called beta (and alpha be gone): {names:?}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("node.json")).expect("state"))
            .expect("json");
    let nodes = server.get("/v1/nodes").await;
    assert_eq!(
        nodes["nodes"][0]["id"], saved["node_id"],
        "the saved identity is the renamed node's"
    );
    stop(&mut child);
}

/// A node-join token (issue 21) given as the node's `--secret` enrols one render machine; a
/// second machine with the same single-use token is refused and exits naming the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_join_token_enrols_one_node() {
    let server = Server::start().await;
    let c = server.client();
    let created: Value = c
        .post_json(
            "/v1/tokens",
            &serde_json::json!({"name": "rack", "role": "node-join", "uses": 1}),
        )
        .await
        .unwrap_or_else(|e| panic!("create a join token: {}", e.report()));
    let join = created["token"].as_str().unwrap_or_default().to_string();
    let mut children = Vec::new();
    for name in ["first", "second"] {
        let cwd = server.dir.path().join(name);
        std::fs::create_dir_all(&cwd).expect("cwd");
        let state = cwd.join("state");
        children.push(node_with(&server, &join, name, &cwd, &cwd, Some(&state)));
        if name == "first" {
            let state = state.join("node.json");
            wait_until("the first node enrols", Duration::from_secs(30), || async {
                state.is_file()
            })
            .await;
        }
    }
    let (second, second_log) = &mut children[1];
    let code = exit_code(second, Duration::from_secs(30), second_log).await;
    let log = std::fs::read_to_string(&*second_log).unwrap_or_default();
    assert_ne!(code, Some(0), "the second node cannot enrol; log:\n{log}");
    assert!(log.contains("no enrolment left"), "{log}");
    assert_eq!(node_names(&server).await, ["first"]);
    for (child, _) in &mut children {
        stop(child);
    }
}
