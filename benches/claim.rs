//! Claim + ack cycle cost as the queue grows: 100, 10,000 and 100,000 queued tasks, over the
//! memory store and SQLite (a file, one transaction per request as `edgefarm serve` commits
//! them). Also prints the store operations one cycle costs at each size: the claim index must
//! keep that number flat.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edgefarm::core::{handle, Config, Ctx, SeqIds};
use edgefarm::store::conformance::block_on;
use edgefarm::store::{Memory, Sqlite, Store};
use serde_json::{json, Value};
use std::cell::Cell;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [100, 10_000, 100_000];
const TASKS_PER_JOB: usize = 100;

/// A store plus what the bench needs to know about it.
trait Bench: Store {
    fn ops(&self) -> u64;
    fn around<T>(&self, f: impl FnOnce() -> T) -> T;
}

impl Bench for Memory {
    fn ops(&self) -> u64 {
        Memory::ops(self)
    }
    fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        f()
    }
}

impl Bench for Sqlite {
    fn ops(&self) -> u64 {
        Sqlite::ops(self)
    }
    fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        let _ = self.begin();
        let out = f();
        let _ = self.commit();
        out
    }
}

struct Farm<S> {
    store: S,
    config: Config,
    now: Cell<u64>,
    ids: SeqIds,
}

impl<S: Bench> Farm<S> {
    fn new(store: S) -> Self {
        Farm {
            store,
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
        let resp = self.store.around(|| block_on(handle(req, &ctx)));
        (
            resp.status().as_u16(),
            serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        )
    }

    fn fill(&self, tasks: usize) -> Vec<String> {
        (0..tasks / TASKS_PER_JOB)
            .map(|_| {
                let (s, job) = self.call("POST", "/v1/jobs", json!({"type": "command", "frames": format!("1-{TASKS_PER_JOB}"), "chunk_size": 1, "params": {"program": "p"}}));
                assert_eq!(s, 202);
                job["id"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// One claim and its ack (riding on a second poll, as nodes do).
    fn cycle(&self) -> bool {
        let (s, body) = self.call(
            "POST",
            "/v1/queue/default",
            json!({"node": "bench", "max": 1}),
        );
        if s != 200 {
            return false;
        }
        let t = &body["tasks"][0];
        let (s, _) = self.call(
            "POST",
            &format!("/v1/tasks/{}/ack", t["_id"].as_str().unwrap_or_default()),
            json!({"lease": t["lease"], "status": "done"}),
        );
        s == 200
    }

    /// Runs `iters` cycles, refilling (untimed) whenever the queue runs dry. Refilling deletes
    /// and resubmits rather than requeueing, so task histories do not grow from round to round.
    fn timed(&self, jobs: &mut Vec<String>, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let ok = self.cycle();
            total += start.elapsed();
            if !ok {
                for j in jobs.iter() {
                    self.call("DELETE", &format!("/v1/jobs/{j}"), json!(null));
                }
                *jobs = self.fill(jobs.len() * TASKS_PER_JOB);
                assert!(self.cycle(), "a refilled farm has work");
            }
        }
        total
    }
}

fn bench_store<S: Bench>(c: &mut Criterion, name: &str, make: impl Fn() -> S) {
    let mut group = c.benchmark_group(format!("claim_ack_{name}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let mut ops_table = Vec::new();
    for &n in &SIZES {
        let farm = Farm::new(make());
        let mut jobs = farm.fill(n);
        let before = farm.store.ops();
        let cycles = 200;
        farm.timed(&mut jobs, cycles);
        ops_table.push((n, (farm.store.ops() - before) as f64 / cycles as f64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| farm.timed(&mut jobs, iters))
        });
    }
    group.finish();
    for (n, ops) in ops_table {
        println!("store operations per claim+ack cycle, {name}, {n} queued tasks: {ops:.1}");
    }
}

fn claims(c: &mut Criterion) {
    bench_store(c, "memory", Memory::new);
    let dir = tempfile::tempdir().expect("tempdir");
    let n = Cell::new(0);
    bench_store(c, "sqlite", || {
        n.set(n.get() + 1);
        Sqlite::open(&dir.path().join(format!("bench-{}.db", n.get()))).expect("sqlite")
    });
}

criterion_group!(benches, claims);
criterion_main!(benches);
