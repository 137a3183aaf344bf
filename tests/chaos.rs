//! Chaos: `EDGEFARM_CHAOS_TASKS` one-frame tasks (default 2,000, the CI size) of a `command` job
//! that appends one line per execution to its frame's output file, run by 4 `edgefarm node`
//! processes with 2 slots each against `edgefarm serve` on SQLite with short leases, while a
//! driver
//! - SIGKILLs a random node every few seconds and starts it again,
//! - kill -9s the server a few times and starts it again on the same data,
//! - SIGSTOPs a node for three leases, then SIGCONTs it, so its late heartbeats and acks arrive
//!   after its tasks were leased to someone else,
//! - and runs one node with its wall clock 7 hours ahead (under `faketime`, when installed):
//!   the server's clock alone decides lease expiry, nodes send no times.
//!
//! At the end: every job completed; every task has exactly one winning attempt (one `completed`
//! outcome in its history) and its output file; nothing is queued or leased; every submission
//! the server acknowledged is there after each restart. It prints (to stderr, uncaptured) the
//! figures: executions per task (lines in the output files and granted attempts), kills,
//! restarts, late acks refused, time lost to failed attempts and the wall time.
//!
//! Knobs: `EDGEFARM_CHAOS_TASKS`, `EDGEFARM_CHAOS_SEED`, `EDGEFARM_CHAOS_SERVER_KILLS` (3),
//! `EDGEFARM_CHAOS_FAKETIME=0` (node 0 on the real clock), `EDGEFARM_CHAOS_KEEP=1` (keep the files).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/serve.rs"]
mod serve;

use serve::{Serve, BIN};
const SECRET: &str = "chaos-secret";
const LEASE_MS: u64 = 1_500;
const NODES: usize = 4;
const FRAMES_PER_JOB: u64 = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift: enough randomness for a schedule, and reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn say(line: &str) {
    // Straight to stderr: libtest does not capture it, so CI logs show the figures.
    let _ = writeln!(std::io::stderr(), "chaos: {line}");
}

fn signal(child: &Child, sig: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

struct Farm {
    dir: PathBuf,
    server: Option<Serve>,
    nodes: Vec<Option<Child>>,
    client: reqwest::Client,
    base: String,
    faketime: Option<PathBuf>,
}

impl Farm {
    /// Starts the server, or starts it again on the same port and data after a kill.
    async fn start_server(&mut self) {
        match &mut self.server {
            Some(s) => s.restart().await,
            None => {
                let s = Serve::build()
                    .secret(SECRET)
                    .lease_ms(LEASE_MS)
                    .heartbeat_ms(400)
                    .poll_ms(100)
                    .env("EDGEFARM_LOG", "warn")
                    .start_at(self.dir.clone())
                    .await;
                self.base = s.base.clone();
                self.server = Some(s);
            }
        }
    }

    fn kill_server(&mut self) {
        if let Some(s) = &mut self.server {
            s.kill();
        }
    }

    fn node_config(&self, i: usize) -> PathBuf {
        let dir = self.dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        let program = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mark.sh");
        let config = format!(
            "url = {:?}\nsecret = {SECRET:?}\nname = \"chaos-{i}\"\nslots = 2\nproject_root = {:?}\noutput_root = {:?}\nstate_dir = {:?}\n[types.command.programs]\nmark = {:?}\n",
            self.base,
            self.dir.join("project"),
            self.dir.join("out"),
            dir.join("state"),
            program
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, config).expect("node.toml");
        path
    }

    fn spawn_node(&mut self, i: usize) {
        let config = self.node_config(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{i}/node.log")))
            .expect("node log");
        // Node 0 lives 7 hours in the future (wall clock only: timers use the monotonic clock).
        // libfaketime is preloaded into the node itself rather than run through the `faketime`
        // wrapper, which forks: the child we signal must be the node, or a SIGKILL would leave
        // the node running (and SIGSTOP would not freeze it).
        let mut cmd = Command::new(BIN);
        if let (0, Some(lib)) = (i, &self.faketime) {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME", "+7h")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd
            .arg("node")
            .arg("--config")
            .arg(&config)
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_URL")
            .env("EDGEFARM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edgefarm node");
        self.nodes[i] = Some(child);
    }

    fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn node_id(&self, i: usize) -> String {
        let path = self.dir.join(format!("node-{i}/state/node.json"));
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["node_id"].as_str().map(String::from))
            .unwrap_or_default()
    }

    /// GET with the farm secret; `None` while the server is down.
    async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(SECRET)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    /// Submits a job; `Some(status)` once the server answered (the submission is acknowledged).
    async fn submit(&self, spec: &Value) -> Option<u16> {
        let r = self
            .client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(SECRET)
            .json(spec)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// Every task of a job, through the paged listing.
    async fn tasks(&self, job: &str) -> Vec<Value> {
        let (mut out, mut cursor) = (Vec::new(), String::new());
        loop {
            let (status, page) = self
                .get(&format!("/v1/jobs/{job}/tasks?limit=1000&cursor={cursor}"))
                .await
                .expect("the server is up at the end");
            assert_eq!(status, 200, "tasks of {job}: {page}");
            out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(c) = &self.nodes[i] {
                signal(c, libc::SIGCONT);
            }
            self.kill_node(i);
        }
        self.kill_server();
    }
}

fn job_spec(k: u64) -> Value {
    let (from, to) = (k * FRAMES_PER_JOB + 1, (k + 1) * FRAMES_PER_JOB);
    json!({"id": format!("chaos-{k}"), "type": "command", "frames": format!("{from}-{to}"),
           "chunk_size": 1, "max_attempts": 100,
           "params": {"program": "mark", "args": ["{output_root}/f_{frame}.out", "{frame}"]}})
}

#[derive(Default)]
struct Figures {
    node_kills: u32,
    kills_by_node: [u32; NODES],
    stops_by_node: [u32; NODES],
    server_kills: u32,
    stops: u32,
    submit_retries: u32,
    inflight_answered: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_under_chaos_loses_nothing_and_has_one_winner_per_task() {
    let tasks = env_u64("EDGEFARM_CHAOS_TASKS", 2_000).max(FRAMES_PER_JOB);
    let jobs = tasks.div_ceil(FRAMES_PER_JOB);
    let tasks = jobs * FRAMES_PER_JOB;
    let seed = env_u64(
        "EDGEFARM_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    let server_kills = env_u64("EDGEFARM_CHAOS_SERVER_KILLS", 3) as u32;
    let mut rng = Rng(seed);
    let faketime = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .filter(|_| std::env::var("EDGEFARM_CHAOS_FAKETIME").as_deref() != Ok("0"));
    assert!(
        faketime.is_some() || std::env::var_os("CI").is_none(),
        "CI must run the skewed-clock node: install faketime (scripts/test does), and leave EDGEFARM_CHAOS_FAKETIME unset"
    );
    say(&format!(
        "{tasks} tasks in {jobs} jobs, {NODES} nodes x 2 slots, lease {LEASE_MS} ms, seed {seed}, faketime {}",
        faketime.as_ref().map_or("not installed (node 0 runs on the real clock)".to_string(), |p| p.display().to_string())
    ));

    let tmp = tempfile::tempdir().expect("tempdir");
    let tmp_dir = tmp.path().to_path_buf();
    if std::env::var_os("EDGEFARM_CHAOS_KEEP").is_some() {
        // Keep the data, outputs and logs for a look afterwards.
        say(&format!("keeping {}", tmp.keep().display()));
    }
    std::fs::create_dir_all(tmp_dir.join("project")).expect("project");
    std::fs::create_dir_all(tmp_dir.join("out")).expect("out");
    let mut farm = Farm {
        dir: tmp_dir,
        server: None,
        nodes: (0..NODES).map(|_| None).collect(),
        client: reqwest::Client::new(),
        base: String::new(),
        faketime,
    };
    farm.start_server().await;
    for i in 0..NODES {
        farm.spawn_node(i);
    }

    let start = Instant::now();
    // Generous: the CI size takes about a minute in a debug build on 2 busy cores.
    let deadline = start + Duration::from_secs(120 + tasks / 10);
    let mut fig = Figures::default();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut next_job = 0u64;
    let mut next_node_kill = start + Duration::from_millis(2_000);
    // Server kills and node stops happen at fractions of the work done, so every size gets
    // all of them: kill k of K at k/(K+1) of the tasks completed, stops at 10%, 40% and 65%.
    let mut done_tasks = 0u64;
    let server_kill_at = |k: u32| tasks * u64::from(k + 1) / u64::from(server_kills + 1);
    let stop_at = |k: u32| tasks * [10, 40, 65][k.min(2) as usize] / 100;
    let mut stopped: Option<(usize, Instant)> = None;
    let mut completed_jobs = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        assert!(
            now < deadline,
            "chaos: not done in time ({completed_jobs}/{jobs} jobs completed); logs in {} (set EDGEFARM_CHAOS_KEEP=1 to keep them)",
            farm.dir.display()
        );
        // Submissions go on through the whole run: half the jobs at once, then more as tasks
        // complete (at most half the work outstanding), so some land around server kills.
        let window = (jobs / 2).max(1) * FRAMES_PER_JOB;
        let want = ((done_tasks + window) / FRAMES_PER_JOB).min(jobs);
        while next_job < want {
            match farm.submit(&job_spec(next_job)).await {
                Some(200 | 202) => {
                    acknowledged.push(format!("chaos-{next_job}"));
                    next_job += 1;
                }
                Some(other) => panic!("submit answered {other}"),
                None => {
                    // No answer (the server is down): the same id again is idempotent.
                    fig.submit_retries += 1;
                    break;
                }
            }
        }
        // A node dies and comes back.
        if now >= next_node_kill {
            let i = rng.below(NODES as u64) as usize;
            if stopped.map(|(s, _)| s) != Some(i) {
                farm.kill_node(i);
                fig.node_kills += 1;
                fig.kills_by_node[i] += 1;
                farm.spawn_node(i);
            }
            next_node_kill = now + Duration::from_millis(2_000 + rng.below(2_000));
        }
        // A node freezes past its leases, then wakes up with stale leases.
        match stopped {
            Some((i, until)) if now >= until => {
                if let Some(c) = &farm.nodes[i] {
                    signal(c, libc::SIGCONT);
                }
                stopped = None;
            }
            None if fig.stops < 3 && done_tasks >= stop_at(fig.stops) => {
                let i = rng.below(NODES as u64) as usize;
                if let Some(c) = &farm.nodes[i] {
                    signal(c, libc::SIGSTOP);
                    fig.stops += 1;
                    fig.stops_by_node[i] += 1;
                    stopped = Some((i, now + Duration::from_millis(3 * LEASE_MS)));
                }
            }
            _ => {}
        }
        // The server dies (kill -9) and comes back on the same data.
        if fig.server_kills < server_kills && done_tasks >= server_kill_at(fig.server_kills) {
            // A submission is in flight when the server dies: if it was answered it must be
            // there after the restart; if not, it is sent again later with the same id.
            let inflight = (next_job < jobs).then(|| {
                let (client, url, spec) = (
                    farm.client.clone(),
                    format!("{}/v1/jobs", farm.base),
                    job_spec(next_job),
                );
                tokio::spawn(async move {
                    let r = client.post(url).bearer_auth(SECRET).json(&spec);
                    let r = r.timeout(Duration::from_secs(10)).send().await.ok()?;
                    Some(r.status().as_u16())
                })
            });
            tokio::time::sleep(Duration::from_millis(rng.below(4))).await;
            farm.kill_server();
            fig.server_kills += 1;
            if let Some(h) = inflight {
                match h.await.ok().flatten() {
                    Some(200 | 202) => {
                        fig.inflight_answered += 1;
                        acknowledged.push(format!("chaos-{next_job}"));
                        next_job += 1;
                    }
                    Some(other) => panic!("submit answered {other}"),
                    None => fig.submit_retries += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1_000))).await;
            farm.start_server().await;
            for id in &acknowledged {
                let (status, _) = farm
                    .get(&format!("/v1/jobs/{id}"))
                    .await
                    .expect("the server is back");
                assert!(
                    status == 200 || status == 202,
                    "acknowledged submission {id} is missing after a restart ({status})"
                );
            }
        }
        // Progress.
        if let Some((200, list)) = farm.get("/v1/jobs?limit=500").await {
            let views = list["jobs"].as_array().cloned().unwrap_or_default();
            if let Some(bad) = views
                .iter()
                .find(|j| matches!(j["state"].as_str(), Some("failed" | "canceled")))
            {
                panic!("a job ended badly: {bad}");
            }
            done_tasks = views
                .iter()
                .map(|j| j["counts"]["completed"].as_u64().unwrap_or(0))
                .sum();
            let done = views.iter().filter(|j| j["state"] == "completed").count() as u64;
            if done != completed_jobs {
                completed_jobs = done;
                last_progress = Instant::now();
            }
            if done == jobs && next_job == jobs {
                break;
            }
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            say(&format!(
                "{completed_jobs}/{jobs} jobs completed after {:?}",
                start.elapsed()
            ));
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = start.elapsed();
    if let Some((i, _)) = stopped {
        if let Some(c) = &farm.nodes[i] {
            signal(c, libc::SIGCONT);
        }
    }

    // Every acknowledged submission is there, and each job completed.
    assert_eq!(acknowledged.len() as u64, jobs);
    let ids: Vec<String> = (0..NODES).map(|i| farm.node_id(i)).collect();
    let (mut grants, mut double_winners, mut lost, mut lost_ms) = (0u64, 0u64, 0u64, 0u64);
    let mut outcomes: std::collections::BTreeMap<String, u64> = Default::default();
    let mut wins_by_node = vec![0u64; NODES];
    let mut history_cut = 0u64;
    for id in &acknowledged {
        let (status, job) = farm
            .get(&format!("/v1/jobs/{id}"))
            .await
            .expect("server up");
        assert_eq!(
            (status, job["state"].as_str()),
            (200, Some("completed")),
            "{job}"
        );
        let c = &job["counts"];
        assert_eq!(
            (c["queued"].as_u64(), c["leased"].as_u64()),
            (Some(0), Some(0)),
            "nothing left queued or leased: {job}"
        );
        for t in farm.tasks(id).await {
            assert_eq!(t["state"], "completed", "{t}");
            assert!(
                t["lease"].is_null(),
                "no lease left on a completed task: {t}"
            );
            let attempts = t["attempts"].as_u64().unwrap_or(0);
            grants += attempts;
            let history = t["history"].as_array().cloned().unwrap_or_default();
            history_cut += u64::from(history.len() < attempts as usize);
            let mut winners = 0;
            for a in &history {
                let outcome = a["outcome"].as_str().unwrap_or("none").to_string();
                if outcome == "completed" {
                    winners += 1;
                    let node = a["node"].as_str().unwrap_or_default();
                    if let Some(n) = ids.iter().position(|x| x == node) {
                        wins_by_node[n] += 1;
                    }
                } else {
                    let (s, e) = (
                        a["started_ms"].as_u64().unwrap_or(0),
                        a["ended_ms"].as_u64(),
                    );
                    lost_ms += e.map_or(0, |e| e.saturating_sub(s));
                }
                *outcomes.entry(outcome).or_default() += 1;
            }
            if winners != 1 {
                double_winners += u64::from(winners > 1);
                lost += u64::from(winners == 0);
            }
            assert_eq!(winners, 1, "exactly one winning attempt: {t}");
        }
    }
    // Every frame's output exists; its lines count the executions that ran.
    let mut executions = 0u64;
    for frame in 1..=tasks {
        let path = farm.dir.join(format!("out/f_{frame}.out"));
        match std::fs::read_to_string(&path) {
            Ok(s) => executions += s.lines().count() as u64,
            Err(_) => lost += 1,
        }
    }
    let late_acks = (0..NODES)
        .map(|i| {
            std::fs::read_to_string(farm.dir.join(format!("node-{i}/node.log")))
                .unwrap_or_default()
                .matches("the lease is no longer ours")
                .count()
        })
        .sum::<usize>();
    let killed_runs = (0..NODES)
        .map(|i| {
            std::fs::read_to_string(farm.dir.join(format!("node-{i}/node.log")))
                .unwrap_or_default()
                .matches("lease lost; process group killed")
                .count()
        })
        .sum::<usize>();
    say(&format!(
        "wall time {:.1} s for {tasks} tasks ({:.0} tasks/s)",
        wall.as_secs_f64(),
        tasks as f64 / wall.as_secs_f64()
    ));
    say(&format!(
        "node SIGKILLs {}, server kill -9 + restarts {}, SIGSTOP/SIGCONT {}, submits in flight at a kill: {} answered (found after the restart), {} unanswered (sent again)",
        fig.node_kills, fig.server_kills, fig.stops, fig.inflight_answered, fig.submit_retries
    ));
    say(&format!(
        "lost {lost}, double winners {double_winners}, executions {executions} ({} duplicates, {:.3} per task), attempts granted {grants} ({:.3} per task)",
        executions.saturating_sub(tasks),
        executions as f64 / tasks as f64,
        grants as f64 / tasks as f64
    ));
    say(&format!(
        "attempt outcomes {outcomes:?}; time lost in attempts that did not win {:.1} s; late acks refused (stale_lease) {late_acks}; runs killed on lease loss {killed_runs}; tasks whose history was cut {history_cut}",
        lost_ms as f64 / 1000.0
    ));
    say(&format!(
        "wins by node {wins_by_node:?}, SIGKILLs by node {:?}, SIGSTOPs by node {:?} (node 0 runs 7 h ahead when faketime is installed)",
        fig.kills_by_node, fig.stops_by_node
    ));
    assert_eq!(lost, 0, "no task lost");
    assert_eq!(double_winners, 0, "no task has two winners");
    assert!(executions >= tasks, "every frame ran at least once");
    assert!(
        wins_by_node[0] > 0,
        "the node with the skewed clock completes tasks like the others"
    );
}
