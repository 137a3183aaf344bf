//! The CLI in a user's hands (issue 15, items 6 and 9), end to end with the real server and a
//! real node: piped `--follow` prints a line per change and a final newline; `edgefarm job`
//! shows node names, task counts, times and outputs; `edgefarm follow` and `edgefarm log`
//! exist; a job is named after its file; help texts show defaults; a canceled task is logged
//! as such on the node; logs redirected to a file carry no colour codes; and a connection
//! error says what to check.

mod node_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use node_support::{wait_until, Node, NodeSpec, Server, BIN, SECRET};
use serde_json::{json, Value};

struct Farm {
    server: Server,
    node: Node,
    node_id: String,
}

/// A `command` program that takes `$2` seconds, writes `$1` and reports it like Blender does.
fn saved_program(dir: &Path) -> PathBuf {
    let path = dir.join("saved.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nsleep \"$2\"\necho frame > \"$1\"\necho \"Saved: '$1'\"\n",
    )
    .expect("write program");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn farm() -> Farm {
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("out");
    std::fs::create_dir_all(&project).expect("project");
    let types = format!(
        "[types.command.programs]\nsaved = {:?}\nsleep = \"/bin/sleep\"\n",
        saved_program(server.dir.path())
    );
    let node = Node::start(
        &server,
        NodeSpec {
            name: "render-a",
            slots: 1,
            project: &project,
            output: &output,
            types: &types,
        },
    );
    let node_id = node.id().await;
    Farm {
        server,
        node,
        node_id,
    }
}

fn cli(url: &str, args: &[&str]) -> Output {
    // Through the environment: flags after a `--` would go to the program.
    Command::new(BIN)
        .args(args)
        .env("EDGEFARM_URL", url)
        .env("EDGEFARM_SECRET", SECRET)
        .output()
        .expect("run edgefarm")
}

async fn cli_async(url: &str, args: &[&str]) -> Output {
    let (url, args): (String, Vec<String>) = (
        url.to_string(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&url, &args)
    })
    .await
    .expect("join")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_follow_prints_a_line_per_change_and_job_shows_names_times_and_outputs() {
    let farm = farm().await;
    let url = farm.server.url.clone();
    let out = cli_async(
        &url,
        &[
            "submit",
            "command",
            "saved",
            "--frames",
            "1-4",
            "--chunk",
            "1",
            "--follow",
            "--",
            "{output_root}/f_{frame}.txt",
            "1",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert!(
        progress.len() >= 2,
        "piped, --follow prints progress lines as the job goes, not only at the end: {stdout}"
    );
    assert!(
        stdout.ends_with('\n'),
        "the output ends with a newline: {stdout:?}"
    );
    assert!(!stdout.contains("ETA 0s"), "{stdout}");
    assert!(
        stdout.contains("\"saved\""),
        "the job is named after its program, not its id: {stdout}"
    );
    for word in stdout
        .split_whitespace()
        .filter(|w| w.contains("/s") || w.contains("/min"))
    {
        assert!(
            !word.contains('.') || word.len() < 12,
            "rates are short: {word}"
        );
    }
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.contains("completed") && last.contains("4/4"),
        "{stdout}"
    );

    let id = stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .expect("job id in the output")
        .to_string();
    let out = cli(&url, &["job", &id]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("render-a"), "node names, not ids: {stdout}");
    assert!(!stdout.contains(&farm.node_id), "no node ids: {stdout}");
    assert!(
        stdout.contains("4: 4 completed"),
        "counts as text: {stdout}"
    );
    assert!(!stdout.contains("{\""), "no raw JSON: {stdout}");
    assert!(stdout.contains("took"), "the job's duration: {stdout}");
    assert!(stdout.contains("f_1.txt"), "the task's outputs: {stdout}");

    let task = format!("{id}-0");
    let tasks = farm.server.tasks(&id).await;
    let task = tasks
        .first()
        .and_then(|t| t["id"].as_str())
        .map_or(task, str::to_string);
    let out = cli(&url, &["log", &task]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Saved:"), "the task's log: {stdout}");

    let out = cli(&url, &["follow", &id]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("completed"), "{stdout}");

    let log = farm.node.log();
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log}"
    );
    assert!(
        !log.contains("Some(\""),
        "no Debug-formatted options: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_task_is_logged_as_canceled_on_the_node() {
    let farm = farm().await;
    let job = farm
        .server
        .submit(json!({"type": "command", "params": {"program": "sleep", "args": ["60"]}}))
        .await;
    let server = &farm.server;
    wait_until("the task is leased", Duration::from_secs(30), || async {
        server
            .tasks(&job)
            .await
            .iter()
            .any(|t| t["state"] == "leased")
    })
    .await;
    let out = cli_async(&server.url, &["cancel", &job]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    wait_until(
        "the node says the task was canceled",
        Duration::from_secs(30),
        || async { farm.node.log().contains("task canceled") },
    )
    .await;
    let log = farm.node.log();
    assert!(
        !log.contains("lease lost"),
        "a cancel is no lost lease: {log}"
    );
}

/// `edgefarm requeue` of a render says which jobs now wait for it again, down the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_names_the_jobs_that_run_again_after_it() {
    let farm = farm().await;
    let server = &farm.server;
    let step = |id: &str, after: Option<&str>| {
        let mut spec = json!({"id": id, "type": "command",
            "params": {"program": "sleep", "args": ["0"]}});
        if let Some(a) = after {
            spec["after_jobs"] = json!([a]);
        }
        spec
    };
    let render = server.submit(step("render", None)).await;
    server.submit(step("video", Some(&render))).await;
    server.submit(step("upload", Some("video"))).await;
    server.submit(step("other", None)).await;
    server
        .wait_job("upload", "completed", Duration::from_secs(60))
        .await;
    // Drained, the node takes nothing, so what the CLI reads cannot race a render.
    let out = cli_async(&server.url, &["drain", &farm.node_id]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli_async(&server.url, &["requeue", &render]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("jobs waiting for it: video, upload\n"),
        "{stdout}"
    );
    let out = cli_async(&server.url, &["requeue", "other"]).await;
    let (stdout, _) = text(&out);
    assert!(!stdout.contains("waiting for it"), "nobody waits: {stdout}");
}

#[test]
fn a_job_is_named_after_its_blend_file() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let server = Server::start().await;
        let out = cli(
            &server.url,
            &["submit", "blender", "shots/sh12.blend", "--json"],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let job: Value = serde_json::from_str(&stdout).expect("json");
        assert_eq!(job["name"], "sh12.blend", "{job:#}");
    });
}

#[test]
fn help_texts_show_what_each_option_does_and_its_default() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().expect("help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let submit = help(&["submit", "blender", "--help"]);
    for (flag, default) in [
        ("--queue", "[default: default]"),
        ("--name", "[default: the .blend file's name"),
        ("--max-attempts", "[default: 3]"),
        ("--chunk", "[default: 10]"),
    ] {
        let item = option_help(&submit, flag);
        assert!(
            item.contains(default),
            "{flag} should say {default}: {item}"
        );
    }
    let jobs = help(&["jobs", "--help"]);
    assert!(
        jobs.contains("Most jobs to list") && jobs.contains("[default: 50]"),
        "{jobs}"
    );
    assert!(
        help(&["--help"]).contains("\n  follow "),
        "edgefarm follow exists"
    );
}

#[test]
fn a_connection_error_says_what_to_check() {
    let out = Command::new(BIN)
        .args(["jobs", "--url", "http://127.0.0.1:9", "--secret", "x"])
        .env_remove("EDGEFARM_URL")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is `edgefarm serve` running") && stderr.contains("EDGEFARM_URL"),
        "{stderr}"
    );
}

/// The help of one option: its line and the description lines under it, whitespace collapsed.
fn option_help(help: &str, flag: &str) -> String {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(flag));
    let mut item: Vec<&str> = lines.next().into_iter().collect();
    item.extend(lines.take_while(|l| !l.trim_start().starts_with('-')));
    item.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
