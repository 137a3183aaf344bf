//! Jobs that wait for other jobs (`after_jobs`) cost the claim nothing: their tasks are not in
//! the claim index until released. Two farms in one run, each with 10,000 queued tasks; the
//! second also holds 100,000 waiting tasks (1,000 jobs of 100 after a job that never runs).
//! Rounds of claim+ack cycles alternate between them, and the ratio of their times is printed
//! (noise hits both alike). Then the release: the store operations that the one ack ending a
//! job spends releasing 1,000 waiting tasks (10 jobs of 100). Then the same two measures for
//! jobs waiting frame by frame (`after_frames`): 100,000 held tasks beside the 10,000 queued
//! ones, and the store operations that releasing 1,000 tasks one frame at a time adds to the
//! 1,000 acks that render those frames.
//!
//! `cargo bench --bench waiting`

use bytes::Bytes;
use edgefarm::core::{handle, Config, Ctx, SeqIds};
use edgefarm::store::conformance::block_on;
use edgefarm::store::Memory;
use serde_json::{json, Value};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct Farm {
    store: Memory,
    config: Config,
    now: Cell<u64>,
    ids: SeqIds,
}

impl Farm {
    fn new() -> Farm {
        Farm {
            store: Memory::new(),
            config: Config::new("bench-secret"),
            now: Cell::new(1_800_000_000_000),
            ids: SeqIds::default(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.now.set(self.now.get() + 1);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer bench-secret")
            .body(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
            .expect("request");
        let ctx = Ctx {
            store: &self.store,
            config: &self.config,
            now_ms: self.now.get(),
            ids: &self.ids,
            notes: Default::default(),
        };
        let resp = block_on(handle(req, &ctx));
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    fn submit(&self, spec: Value) -> String {
        let (s, job) = self.call("POST", "/v1/jobs", spec);
        assert!(s == 202, "submit: {s} {job}");
        job["id"].as_str().unwrap_or_default().to_string()
    }

    /// `jobs` jobs of `tasks` tasks on `queue`, each waiting for `after` when given.
    fn fill(&self, queue: &str, jobs: usize, tasks: usize, after: Option<&str>) {
        self.fill_waiting(queue, jobs, tasks, after, false);
    }

    /// As [`Farm::fill`]; `per_frame`: waiting for `after` frame by frame.
    fn fill_waiting(
        &self,
        queue: &str,
        jobs: usize,
        tasks: usize,
        after: Option<&str>,
        per_frame: bool,
    ) {
        for _ in 0..jobs {
            let mut spec = json!({"type": "command", "queue": queue, "frames": format!("1-{tasks}"),
                                  "chunk_size": 1, "params": {"program": "p"}});
            if let Some(a) = after {
                spec["after_jobs"] = json!([a]);
                if per_frame {
                    spec["after_frames"] = json!(true);
                }
            }
            self.submit(spec);
        }
    }

    /// Claims and acks every task on `queue`; the store operations spent.
    fn drain(&self, queue: &str) -> (usize, u64) {
        let before = self.store.ops();
        let mut n = 0;
        while self.cycle(queue).is_some() {
            n += 1;
        }
        (n, self.store.ops() - before)
    }

    /// One claim on `queue` and its ack.
    fn cycle(&self, queue: &str) -> Option<()> {
        let (s, body) = self.call(
            "POST",
            &format!("/v1/queue/{queue}"),
            json!({"node": "bench", "max": 1}),
        );
        if s != 200 {
            return None;
        }
        let t = &body["tasks"][0];
        let (s, _) = self.call(
            "POST",
            &format!("/v1/tasks/{}/ack", t["_id"].as_str().unwrap_or_default()),
            json!({"lease": t["lease"], "status": "done"}),
        );
        (s == 200).then_some(())
    }

    fn round(&self, cycles: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..cycles {
            self.cycle("default").expect("work left");
        }
        start.elapsed()
    }
}

fn main() {
    let plain = Farm::new();
    plain.fill("default", 100, 100, None);
    let loaded = Farm::new();
    loaded.fill("default", 100, 100, None);
    let blocker =
        loaded.submit(json!({"type": "command", "queue": "blocker", "params": {"program": "p"}}));
    loaded.fill("default", 1000, 100, Some(&blocker));
    let (rounds, cycles) = (20, 200);
    compare(&plain, &loaded, rounds, cycles, "waiting");

    // Frame by frame: 100,000 held tasks (1,000 jobs of 100, per frame after a render of 100
    // frames that never runs).
    let plain = Farm::new();
    plain.fill("default", 100, 100, None);
    let held = Farm::new();
    held.fill("default", 100, 100, None);
    let render = held.submit(
        json!({"type": "command", "queue": "blocker", "frames": "1-100",
                                    "chunk_size": 1, "params": {"program": "p"}}),
    );
    held.fill_waiting("default", 1000, 100, Some(&render), true);
    compare(&plain, &held, rounds, cycles, "held (per-frame)");

    // The per-frame release: 1,000 acks of a render, with and without a job waiting for its
    // frames; the difference is what releasing its 1,000 tasks cost.
    let mut spent = Vec::new();
    for per_frame in [false, true] {
        let farm = Farm::new();
        let render = farm.submit(
            json!({"type": "command", "queue": "render", "frames": "1-1000",
                                        "chunk_size": 1, "params": {"program": "p"}}),
        );
        if per_frame {
            farm.fill_waiting("comp", 1, 1000, Some(&render), true);
            assert!(
                farm.cycle("comp").is_none(),
                "nothing released before its frame"
            );
        }
        let (acked, ops) = farm.drain("render");
        assert_eq!(acked, 1000);
        if per_frame {
            let (comps, _) = farm.drain("comp");
            assert_eq!(comps, 1000, "every comp task released once");
        }
        spent.push(ops);
    }
    println!(
        "1,000 render acks: {} store operations alone, {} with a per-frame job waiting: the release of its 1,000 tasks cost {} ({:.1} per task)",
        spent[0],
        spent[1],
        spent[1] - spent[0],
        (spent[1] - spent[0]) as f64 / 1000.0
    );
    release_of_waiting_jobs();
}

/// Alternating rounds of claim+ack cycles on two farms; prints both and their ratio.
fn compare(plain: &Farm, loaded: &Farm, rounds: usize, cycles: usize, what: &str) {
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    let ops_before = (plain.store.ops(), loaded.store.ops());
    for _ in 0..rounds {
        a += plain.round(cycles);
        b += loaded.round(cycles);
    }
    let n = (rounds * cycles) as f64;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "claim+ack, memory store, 10,000 queued tasks: {:.1} us/cycle, {:.1} store ops/cycle",
        per(a),
        (plain.store.ops() - ops_before.0) as f64 / n
    );
    println!(
        "claim+ack, memory store, 10,000 queued + 100,000 {what} tasks: {:.1} us/cycle, {:.1} store ops/cycle",
        per(b),
        (loaded.store.ops() - ops_before.1) as f64 / n
    );
    println!(
        "ratio {what}/plain: {:.3} (goal: within 1.20)",
        b.as_secs_f64() / a.as_secs_f64()
    );
}

/// The release of whole waiting jobs: one ack ends the blocker; count what it costs.
fn release_of_waiting_jobs() {
    let farm = Farm::new();
    let blocker =
        farm.submit(json!({"type": "command", "queue": "blocker", "params": {"program": "p"}}));
    farm.fill("default", 10, 100, Some(&blocker));
    assert!(
        farm.cycle("default").is_none(),
        "nothing is claimable while waiting"
    );
    let (s, body) = farm.call(
        "POST",
        "/v1/queue/blocker",
        json!({"node": "bench", "max": 1}),
    );
    assert_eq!(s, 200);
    let t = &body["tasks"][0];
    let before = farm.store.ops();
    let (s, _) = farm.call(
        "POST",
        &format!("/v1/tasks/{}/ack", t["_id"].as_str().unwrap_or_default()),
        json!({"lease": t["lease"], "status": "done"}),
    );
    assert_eq!(s, 200);
    let released = farm.store.ops() - before;
    let mut claimed = 0;
    while farm.cycle("default").is_some() {
        claimed += 1;
    }
    assert_eq!(claimed, 1000, "every released task is claimable, once");
    println!(
        "release of 10 jobs x 100 tasks (1,000 tasks) by one ack: {released} store operations (the ack included)"
    );
}
