//! A state-machine property test of the core: random sequences of submit, claim, heartbeat,
//! ack done, ack failed, release, cancel, pause, resume, requeue and time passing, sent through
//! `handle()` over the memory store with the clock moved by hand. After every step the farm is
//! read back through the API and checked against a small model:
//!
//! - no task is leased twice at once (a claim never grants a task whose previous lease is live);
//! - every lease the server shows is one a claim answer handed out, with the expiry the model
//!   predicts, and a lease only disappears for a reason (ack, release, expiry, cancel, job failure);
//! - a job's counts equal the states of its tasks, and its state follows the rollup rule;
//! - no task is lost: every task of every job is listed exactly once, with a valid state, and
//!   every job is listed exactly once;
//! - an ack, heartbeat or release with a lease that is no longer held is refused (409) and
//!   changes nothing in the store (compared byte for byte); one with a held lease succeeds, and
//!   so does one with a lease that lapsed while nobody else was granted the task since;
//! - a completed task shows the result of the ack that won, never a later one;
//! - a claim that returns fewer tasks than asked leaves no task this node could have taken.
//!
//! Case count: `PROPTEST_CASES` (default 96, up to 80 steps each) keeps a debug run around 30 s
//! on two busy cores. `cargo test --test invariants -- --nocapture` prints what the runs
//! exercised (grants, take-overs of expired leases, stale acks refused, tasks completed/failed).

use bytes::Bytes;
use edgefarm::core::{handle, Config, Ctx, SeqIds};
use edgefarm::store::Memory;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeMap;

const LEASE_MS: u64 = 1_000;
const QUEUE: &str = "q";
const NODES: [&str; 3] = ["n0", "n1", "n2"];
const SECRET: &str = "invariants-secret";

#[derive(Debug, Clone)]
enum Op {
    Submit {
        frames: u32,
        chunk: u32,
        max_attempts: u32,
        continue_on_failure: bool,
        priority: i64,
    },
    Claim {
        node: usize,
        max: u32,
    },
    Heartbeat {
        lease: usize,
    },
    AckDone {
        lease: usize,
    },
    AckFail {
        lease: usize,
    },
    Release {
        lease: usize,
    },
    Cancel {
        job: usize,
    },
    Pause {
        job: usize,
    },
    Resume {
        job: usize,
    },
    Requeue {
        job: usize,
        all: bool,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let frames = prop_oneof![8 => 1u32..=8, 1 => 60u32..=70];
    prop_oneof![
        3 => (frames, 1u32..=3, 1u32..=3, any::<bool>(), prop_oneof![Just(10i64), Just(50), Just(90)])
            .prop_map(|(frames, chunk, max_attempts, continue_on_failure, priority)| Op::Submit {
                frames, chunk, max_attempts, continue_on_failure, priority
            }),
        6 => (0usize..NODES.len(), 1u32..=3).prop_map(|(node, max)| Op::Claim { node, max }),
        2 => (0usize..64).prop_map(|lease| Op::Heartbeat { lease }),
        4 => (0usize..64).prop_map(|lease| Op::AckDone { lease }),
        2 => (0usize..64).prop_map(|lease| Op::AckFail { lease }),
        1 => (0usize..64).prop_map(|lease| Op::Release { lease }),
        1 => (0usize..8).prop_map(|job| Op::Cancel { job }),
        1 => (0usize..8).prop_map(|job| Op::Pause { job }),
        1 => (0usize..8).prop_map(|job| Op::Resume { job }),
        1 => (0usize..8, any::<bool>()).prop_map(|(job, all)| Op::Requeue { job, all }),
        3 => prop_oneof![Just(LEASE_MS / 2), Just(LEASE_MS), Just(LEASE_MS + 1), 0..LEASE_MS * 3]
            .prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The farm: the core over the memory store, with a clock moved by hand.
struct Sim {
    store: Memory,
    config: Config,
    now: Cell<u64>,
    ids: SeqIds,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    fn new() -> Sim {
        Sim::with(|_| {})
    }

    fn with(change: impl FnOnce(&mut Config)) -> Sim {
        let mut config = Config::new(SECRET);
        config.lease_ms = LEASE_MS;
        change(&mut config);
        Sim {
            store: Memory::new(),
            config,
            now: Cell::new(1_800_000_000_000),
            ids: SeqIds::default(),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(&b).unwrap_or_default());
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {SECRET}"))
            .body(Bytes::from(bytes))
            .expect("a valid request");
        let ctx = Ctx {
            store: &self.store,
            config: &self.config,
            now_ms: self.now.get(),
            ids: &self.ids,
            notes: Default::default(),
        };
        let resp = self.rt.block_on(handle(req, &ctx));
        let status = resp.status().as_u16();
        let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (status, body)
    }
}

#[derive(Debug)]
struct MJob {
    id: String,
    tasks: u32,
    continue_on_failure: bool,
    paused: bool,
    canceled: bool,
    /// Leases granted per task (the task's `attempts`).
    grants: Vec<u32>,
    /// Nodes that acked each task failed since it was last requeued.
    failed_nodes: Vec<Vec<String>>,
    /// The result of the ack that won each task.
    winner: Vec<Option<Value>>,
    /// Task states and the job state as last read.
    seen_states: Vec<String>,
    seen_state: String,
}

#[derive(Debug)]
struct MLease {
    job: usize,
    task: u32,
    token: String,
    node: usize,
    attempt: u32,
    expires: u64,
    /// Held as far as the model knows (not acked, released, taken over or ended by the job).
    live: bool,
    /// Another claim took the task after this lease expired.
    taken_over: bool,
    /// It expired and a claim settled it, and nobody was granted the task since: its holder
    /// may still ack, heartbeat or release it (the lease comes back to life).
    lapsed: bool,
}

#[derive(Default)]
struct Model {
    jobs: Vec<MJob>,
    leases: Vec<MLease>,
    /// Acks, heartbeats and releases refused for a stale lease.
    stale_refused: u64,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The rollup rule (src/core/rollup.rs `state`), restated from the job's flags as the model
/// knows them and the task states as listed.
fn expected_state(j: &MJob, c: &BTreeMap<String, u64>, started: bool) -> &'static str {
    let n = |k: &str| c.get(k).copied().unwrap_or(0);
    let total: u64 = c.values().sum();
    if j.canceled {
        "canceled"
    } else if total > 0 && n("completed") == total {
        "completed"
    } else if (n("failed") > 0 && !j.continue_on_failure) || n("queued") + n("leased") == 0 {
        // A task out of attempts under on_failure=fail, or everything finished and not all
        // of it completed.
        "failed"
    } else if j.paused {
        "paused"
    } else if started {
        "active"
    } else {
        "queued"
    }
}

fn finished(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "canceled")
}

impl Model {
    fn lease(&self, i: usize) -> Option<usize> {
        (!self.leases.is_empty()).then(|| i % self.leases.len())
    }
    fn job(&self, i: usize) -> Option<usize> {
        (!self.jobs.is_empty()).then(|| i % self.jobs.len())
    }
    fn task_id(&self, l: &MLease) -> String {
        format!("{}.{}", self.jobs[l.job].id, l.task)
    }
}

/// Runs one step; panics (with the rule) on a violation.
fn step(sim: &Sim, m: &mut Model, op: &Op) {
    let now = sim.now.get();
    match *op {
        Op::Submit {
            frames,
            chunk,
            max_attempts,
            continue_on_failure,
            priority,
        } => {
            let id = format!("job{}", m.jobs.len());
            let spec = json!({"id": id, "type": "command", "queue": QUEUE, "frames": format!("1-{frames}"),
                "chunk_size": chunk, "max_attempts": max_attempts, "priority": priority,
                "on_failure": if continue_on_failure { "continue" } else { "fail" },
                "params": {"program": "p", "args": ["{frame}"]}});
            let (status, body) = sim.call("POST", "/v1/jobs", Some(spec));
            assert_eq!(status, 202, "a valid submit is accepted: {body}");
            let tasks = frames.div_ceil(chunk);
            assert_eq!(body["counts"]["total"], tasks, "one task per chunk");
            m.jobs.push(MJob {
                id,
                tasks,
                continue_on_failure,
                paused: false,
                canceled: false,
                grants: vec![0; tasks as usize],
                failed_nodes: vec![vec![]; tasks as usize],
                winner: vec![None; tasks as usize],
                seen_states: vec!["queued".into(); tasks as usize],
                seen_state: "queued".into(),
            });
        }
        Op::Claim { node, max } => {
            let (status, body) = sim.call(
                "POST",
                &format!("/v1/queue/{QUEUE}"),
                Some(json!({"node": NODES[node], "max": max})),
            );
            let claimed = match status {
                204 => vec![],
                200 => body["tasks"].as_array().cloned().unwrap_or_default(),
                _ => panic!("a claim answers 200 or 204, got {status} {body}"),
            };
            assert!(claimed.len() <= max as usize, "at most max tasks");
            for t in &claimed {
                let jid = s(&t["job"]);
                let job = m
                    .jobs
                    .iter()
                    .position(|j| j.id == jid)
                    .expect("a claimed task belongs to a submitted job");
                let (_, index) = s(&t["_id"])
                    .rsplit_once('.')
                    .map_or((String::new(), 0), |(a, b)| {
                        (a.to_string(), b.parse::<u32>().unwrap_or(u32::MAX))
                    });
                let j = &m.jobs[job];
                assert!(index < j.tasks, "a claimed task exists");
                assert!(
                    !j.paused && !j.canceled,
                    "no task of a paused or canceled job is handed out ({jid})"
                );
                assert!(
                    !j.failed_nodes[index as usize].contains(&NODES[node].to_string()),
                    "a node is never handed a task it failed"
                );
                let seen = &j.seen_states[index as usize];
                assert!(
                    seen == "queued" || seen == "leased",
                    "only a queued or leased (expired) task is claimable, {jid}.{index} was {seen}"
                );
                for l in m
                    .leases
                    .iter_mut()
                    .filter(|l| l.live && l.job == job && l.task == index)
                {
                    assert!(
                        l.expires <= now,
                        "task {jid}.{index} leased twice at once: attempt {} holds it until {} (now {now})",
                        l.attempt,
                        l.expires
                    );
                    // Taken over: the old holder's lease is gone.
                    l.live = false;
                    l.taken_over = true;
                }
                for l in m
                    .leases
                    .iter_mut()
                    .filter(|l| l.lapsed && l.job == job && l.task == index)
                {
                    // Granted to someone since it lapsed: its holder can no longer ack.
                    l.lapsed = false;
                    l.taken_over = true;
                }
                let token = s(&t["lease"]);
                assert!(
                    !m.leases.iter().any(|l| l.token == token),
                    "lease tokens are never reused"
                );
                let attempt = t["attempt"].as_u64().unwrap_or(0) as u32;
                m.jobs[job].grants[index as usize] += 1;
                assert_eq!(
                    attempt, m.jobs[job].grants[index as usize],
                    "attempt numbers count the grants"
                );
                assert_eq!(
                    t["lease_expires_ms"].as_u64(),
                    Some(now + LEASE_MS),
                    "a lease runs lease_ms from the server's now"
                );
                m.leases.push(MLease {
                    job,
                    task: index,
                    token,
                    node,
                    attempt,
                    expires: now + LEASE_MS,
                    live: true,
                    taken_over: false,
                    lapsed: false,
                });
            }
            if claimed.len() < max as usize {
                // Liveness: nothing this node could take is left queued (checked after the
                // step's read-back, see `observe`).
                check_nothing_claimable_left(sim, m, node);
            }
        }
        Op::Heartbeat { lease }
        | Op::AckDone { lease }
        | Op::AckFail { lease }
        | Op::Release { lease } => {
            let Some(i) = m.lease(lease) else { return };
            let id = m.task_id(&m.leases[i]);
            let token = m.leases[i].token.clone();
            let revivable = {
                let l = &m.leases[i];
                let j = &m.jobs[l.job];
                // A lapse that used up the task's attempts is final (the core dropped it from
                // the claim index); only a task still queued takes its lapsed lease back.
                let open = j.seen_states[l.task as usize] == "queued";
                let job_failed = j.seen_state == "failed" && !j.continue_on_failure;
                l.lapsed && open && !j.canceled && !job_failed
            };
            if revivable {
                // Nobody took the task since its lease lapsed: the lease is the holder's again.
                let l = &mut m.leases[i];
                l.live = true;
                l.lapsed = false;
                l.expires = now + LEASE_MS;
            }
            let live = m.leases[i].live;
            let (path, body) = match op {
                Op::Heartbeat { .. } => (
                    format!("/v1/tasks/{id}/heartbeat"),
                    json!({"lease": token, "progress": {"done": 0, "total": 1}}),
                ),
                Op::AckDone { .. } => (
                    format!("/v1/tasks/{id}/ack"),
                    json!({"lease": token, "status": "done", "result": {"by": token}}),
                ),
                Op::AckFail { .. } => (
                    format!("/v1/tasks/{id}/ack"),
                    json!({"lease": token, "status": "failed", "error": "boom"}),
                ),
                _ => (format!("/v1/tasks/{id}/release"), json!({"lease": token})),
            };
            let before = sim.store.snapshot();
            let (status, answer) = sim.call("POST", &path, Some(body));
            if !live {
                assert_eq!(
                    (status, s(&answer["error"]["code"])),
                    (409, "stale_lease".to_string()),
                    "{path} with a lease no longer held is refused: {answer}"
                );
                assert!(
                    sim.store.snapshot() == before,
                    "{path} with a stale lease changed the store"
                );
                m.stale_refused += 1;
                return;
            }
            assert_eq!(status, 200, "{path} with the held lease succeeds: {answer}");
            let l = &mut m.leases[i];
            let (job, task, node) = (l.job, l.task as usize, l.node);
            match op {
                Op::Heartbeat { .. } => {
                    l.expires = now + LEASE_MS;
                    assert_eq!(answer["lease_expires_ms"].as_u64(), Some(l.expires));
                }
                Op::AckDone { .. } => {
                    l.live = false;
                    m.jobs[job].winner[task] = Some(json!({"by": token}));
                }
                Op::AckFail { .. } => {
                    l.live = false;
                    let n = NODES[node].to_string();
                    if !m.jobs[job].failed_nodes[task].contains(&n) {
                        m.jobs[job].failed_nodes[task].push(n);
                    }
                }
                _ => l.live = false,
            }
        }
        Op::Cancel { job } | Op::Pause { job } | Op::Resume { job } | Op::Requeue { job, .. } => {
            let Some(j) = m.job(job) else { return };
            let (verb, body) = match op {
                Op::Cancel { .. } => ("cancel", None),
                Op::Pause { .. } => ("pause", None),
                Op::Resume { .. } => ("resume", None),
                Op::Requeue { all, .. } => ("requeue", all.then(|| json!({"all": true}))),
                _ => unreachable!(),
            };
            let id = m.jobs[j].id.clone();
            let was = m.jobs[j].seen_state.clone();
            let before = sim.store.snapshot();
            let (status, answer) = sim.call("POST", &format!("/v1/jobs/{id}/{verb}"), body);
            if verb != "requeue" && finished(&was) {
                assert_eq!(status, 409, "{verb} of a {was} job is a conflict: {answer}");
                assert!(
                    sim.store.snapshot() == before,
                    "a refused {verb} changed the store"
                );
                return;
            }
            assert_eq!(status, 200, "{verb} of a {was} job: {answer}");
            let mj = &mut m.jobs[j];
            match verb {
                "cancel" => {
                    mj.canceled = true;
                    for l in m.leases.iter_mut().filter(|l| l.job == j) {
                        l.live = false;
                        l.lapsed = false;
                    }
                }
                "pause" => mj.paused = true,
                "resume" => mj.paused = false,
                _ => {
                    let all = matches!(op, Op::Requeue { all: true, .. }) || was == "completed";
                    for t in 0..mj.tasks as usize {
                        let again = match mj.seen_states[t].as_str() {
                            "failed" | "canceled" => true,
                            "completed" => all,
                            _ => false,
                        };
                        if again {
                            mj.failed_nodes[t].clear();
                            mj.winner[t] = None;
                            for l in m
                                .leases
                                .iter_mut()
                                .filter(|l| l.job == j && l.task as usize == t)
                            {
                                l.lapsed = false;
                            }
                        }
                        if mj.seen_states[t] == "queued" {
                            // A waiting task forgets which nodes failed it too.
                            mj.failed_nodes[t].clear();
                        }
                    }
                    mj.canceled = false;
                    mj.paused = false;
                }
            }
        }
        Op::Advance { ms } => sim.now.set(now + ms),
    }
    observe(sim, m, op);
}

/// After a claim that returned fewer tasks than asked: no task is still queued that this node
/// could have taken (job not paused or finished, node not among its failed nodes).
fn check_nothing_claimable_left(sim: &Sim, m: &Model, node: usize) {
    for j in &m.jobs {
        let (_, view) = sim.call("GET", &format!("/v1/jobs/{}", j.id), None);
        if j.paused || j.canceled || finished(&s(&view["state"])) {
            continue;
        }
        for t in list_tasks(sim, &j.id) {
            let index = t["index"].as_u64().unwrap_or(0) as usize;
            if s(&t["state"]) == "queued"
                && j.seen_states[index] == "queued"
                && !j.failed_nodes[index].contains(&NODES[node].to_string())
            {
                panic!(
                    "a claim for {} came back short while {}.{index} was queued for it",
                    NODES[node], j.id
                );
            }
        }
    }
}

/// Every task of a job, through the paged listing (small pages, so the cursor is exercised).
fn list_tasks(sim: &Sim, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let (status, page) = sim.call(
            "GET",
            &format!("/v1/jobs/{id}/tasks?limit=7&cursor={cursor}"),
            None,
        );
        assert_eq!(status, 200, "tasks of {id}: {page}");
        out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
    panic!("the task listing of {id} never ends");
}

/// Reads everything back and checks it against the model.
fn observe(sim: &Sim, m: &mut Model, op: &Op) {
    let now = sim.now.get();
    let (status, list) = sim.call("GET", &format!("/v1/jobs?queue={QUEUE}&limit=500"), None);
    assert_eq!(status, 200);
    let mut listed: Vec<String> = list["jobs"]
        .as_array()
        .map(|a| a.iter().map(|j| s(&j["id"])).collect())
        .unwrap_or_default();
    listed.sort();
    let mut expected: Vec<String> = m.jobs.iter().map(|j| j.id.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected, "every job is listed exactly once");

    for (ji, j) in m.jobs.iter_mut().enumerate() {
        let (status, view) = sim.call("GET", &format!("/v1/jobs/{}", j.id), None);
        assert!(status == 200 || status == 202, "job {}: {view}", j.id);
        let tasks = list_tasks(sim, &j.id);
        let indices: Vec<u64> = tasks
            .iter()
            .map(|t| t["index"].as_u64().unwrap_or(u64::MAX))
            .collect();
        let want: Vec<u64> = (0..j.tasks as u64).collect();
        assert_eq!(
            indices, want,
            "every task of {} is listed exactly once, in order",
            j.id
        );
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut started = false;
        for t in &tasks {
            let index = t["index"].as_u64().unwrap_or(0) as usize;
            let state = s(&t["state"]);
            assert!(
                ["queued", "leased", "completed", "failed", "canceled"].contains(&state.as_str()),
                "a valid task state: {state}"
            );
            *counts.entry(state.clone()).or_default() += 1;
            let attempts = t["attempts"].as_u64().unwrap_or(0) as u32;
            started |= attempts > 0;
            assert_eq!(
                attempts, j.grants[index],
                "{}.{index}: every attempt was handed out by a claim answer",
                j.id
            );
            let mut fnodes: Vec<String> = t["failed_nodes"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            fnodes.sort();
            let mut mfnodes = j.failed_nodes[index].clone();
            mfnodes.sort();
            assert_eq!(fnodes, mfnodes, "{}.{index}: failed nodes", j.id);
            // The lease the server shows is a live one the model knows, with its expiry.
            let server_lease = t["lease"].as_object().map(|l| {
                (
                    l["attempt"].as_u64().unwrap_or(0) as u32,
                    s(&l["node"]),
                    l["expires_ms"].as_u64().unwrap_or(0),
                )
            });
            assert_eq!(
                state == "leased",
                server_lease.is_some(),
                "{}.{index}: a task has a lease exactly when it is leased",
                j.id
            );
            for l in m
                .leases
                .iter_mut()
                .filter(|l| l.job == ji && l.task as usize == index && l.live)
            {
                match &server_lease {
                    Some((attempt, node, expires)) if *attempt == l.attempt => {
                        assert_eq!(node, NODES[l.node], "the lease's node");
                        assert_eq!(*expires, l.expires, "{}.{index}: the lease's expiry", j.id);
                    }
                    _ => {
                        // Gone from the server: only lazy expiry (a claim settled it), or the
                        // job ending (a failed task under on_failure=fail) may do that.
                        let job_ended = matches!(s(&view["state"]).as_str(), "failed" | "canceled");
                        assert!(
                            l.expires <= now || job_ended,
                            "{}.{index}: live lease of attempt {} vanished after {op:?}",
                            j.id,
                            l.attempt
                        );
                        l.live = false;
                        // Settled by a claim's lazy expiry: revivable until the next grant.
                        l.lapsed = l.expires <= now && server_lease.is_none();
                    }
                }
            }
            if let Some((attempt, _, _)) = &server_lease {
                let known = m.leases.iter().any(|l| {
                    l.job == ji && l.task as usize == index && l.attempt == *attempt && l.live
                });
                assert!(
                    known,
                    "{}.{index}: the server shows lease attempt {attempt} no claim answer handed out",
                    j.id
                );
            }
            if state == "completed" {
                assert_eq!(
                    Some(&t["result"]),
                    j.winner[index].as_ref(),
                    "{}.{index}: the winning ack's result is kept",
                    j.id
                );
            }
            j.seen_states[index] = state;
        }
        // Counts equal the task states.
        for k in ["queued", "leased", "completed", "failed", "canceled"] {
            assert_eq!(
                view["counts"][k].as_u64().unwrap_or(u64::MAX),
                counts.get(k).copied().unwrap_or(0),
                "{}: count of {k} tasks",
                j.id
            );
        }
        assert_eq!(view["counts"]["total"].as_u64(), Some(j.tasks as u64));
        let state = s(&view["state"]);
        assert_eq!(
            state,
            expected_state(j, &counts, started),
            "{}: the job state follows the rollup rule ({counts:?}, paused {}, canceled {})",
            j.id,
            j.paused,
            j.canceled
        );
        assert_eq!(
            view["paused"].as_bool(),
            Some(j.paused),
            "{}: paused flag",
            j.id
        );
        assert_eq!(status == 200, finished(&state), "200 only once finished");
        j.seen_state = state;
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

/// What the runs exercised, printed at the end so a reader can see the checks had teeth.
#[derive(Debug, Default)]
struct Stats {
    steps: u64,
    grants: u64,
    takeovers: u64,
    stale_refused: u64,
    completed: u64,
    failed_tasks: u64,
}

thread_local! {
    static STATS: std::cell::RefCell<Stats> = std::cell::RefCell::default();
}

#[test]
fn the_core_keeps_its_invariants() {
    use proptest::test_runner::{Config as RunConfig, TestRunner};
    let config = RunConfig {
        cases: cases(),
        max_shrink_iters: 4000,
        ..RunConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..80), |ops| {
        let sim = Sim::new();
        let mut m = Model::default();
        for op in &ops {
            step(&sim, &mut m, op);
        }
        STATS.with(|st| {
            let mut st = st.borrow_mut();
            st.steps += ops.len() as u64;
            st.grants += m.leases.len() as u64;
            st.takeovers += m.leases.iter().filter(|l| l.taken_over).count() as u64;
            st.stale_refused += m.stale_refused;
            for j in &m.jobs {
                st.completed += j.seen_states.iter().filter(|s| *s == "completed").count() as u64;
                st.failed_tasks += j.seen_states.iter().filter(|s| *s == "failed").count() as u64;
            }
        });
        Ok(())
    });
    STATS.with(|st| eprintln!("invariants: {} cases, {:?}", cases(), st.borrow()));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// An attempt's log is bounded (`log_chunks_per_attempt` chunks of `log_chunk_bytes`): past it
/// the chunks are dropped but the heartbeat still extends the lease, so a chatty render cannot
/// fill the store and does not die of it either.
#[test]
fn an_attempts_log_is_bounded_and_the_lease_lives_on() {
    let sim = Sim::with(|c| c.limits.log_chunks_per_attempt = 3);
    let (status, _) = sim.call(
        "POST",
        "/v1/jobs",
        Some(
            json!({"id": "chatty", "type": "command", "queue": QUEUE, "params": {"program": "p"}}),
        ),
    );
    assert_eq!(status, 202);
    let (_, claim) = sim.call(
        "POST",
        &format!("/v1/queue/{QUEUE}"),
        Some(json!({"node": "n0"})),
    );
    let lease = claim["tasks"][0]["lease"].clone();
    for i in 0..5 {
        sim.now.set(sim.now.get() + LEASE_MS / 2);
        let (status, beat) = sim.call(
            "POST",
            "/v1/tasks/chatty.0/heartbeat",
            Some(json!({"lease": lease, "log": format!("line {i}\n")})),
        );
        assert_eq!(status, 200, "heartbeat {i} keeps the lease: {beat}");
        assert_eq!(
            beat["lease_expires_ms"].as_u64(),
            Some(sim.now.get() + LEASE_MS)
        );
    }
    let logs = sim
        .store
        .snapshot()
        .keys()
        .filter(|k| k.starts_with("log/"))
        .count();
    assert_eq!(logs, 3, "only the first 3 chunks are kept");
    let req = http::Request::builder()
        .uri("/v1/tasks/chatty.0/log")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(Bytes::new())
        .expect("request");
    let ctx = Ctx {
        store: &sim.store,
        config: &sim.config,
        now_ms: sim.now.get(),
        ids: &sim.ids,
        notes: Default::default(),
    };
    let log = sim.rt.block_on(handle(req, &ctx));
    assert_eq!(
        log.body().as_ref(),
        b"line 0\nline 1\nline 2\n",
        "the log keeps its beginning"
    );
}

/// A sequence the property test found after the merge of stop 13 (kept as a fixed case).
#[test]
fn a_release_after_a_pause_leaves_nothing_claimable_behind() {
    let sub = |frames, max_attempts, continue_on_failure, priority| Op::Submit {
        frames,
        chunk: 1,
        max_attempts,
        continue_on_failure,
        priority,
    };
    let claim = |max| Op::Claim { node: 0, max };
    let ops = vec![
        sub(7, 1, true, 50),
        sub(1, 1, false, 90),
        sub(1, 2, false, 10),
        claim(3),
        claim(1),
        sub(60, 1, false, 10),
        claim(3),
        claim(2),
        Op::Advance { ms: 500 },
        claim(2),
        sub(1, 1, false, 10),
        claim(1),
        claim(3),
        Op::Pause { job: 3 },
        Op::Advance { ms: 500 },
        sub(1, 1, false, 10),
        claim(3),
        Op::Release { lease: 19 },
        claim(1),
    ];
    let sim = Sim::new();
    let mut m = Model::default();
    for op in &ops {
        step(&sim, &mut m, op);
    }
}
