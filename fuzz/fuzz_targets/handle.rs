//! Fuzzes `handle()` on the memory store with short sequences of requests: random methods,
//! paths, credentials, headers and bodies, where paths and bodies are built from the API's own
//! words and from ids, leases and tokens earlier answers gave out, so the fuzzer gets past the
//! router and the JSON decoder into the scheduler.
//!
//! Besides panics, it fails on what the API promises never happens: a 500 from a store that
//! cannot fail, an error answer that is not `{"error": {"code", "message"}}`, and a rejected
//! request (4xx) that changed the store.
#![no_main]

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use edgefarm::core::{handle, Config, Ctx, SeqIds};
use edgefarm::store::Memory;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::task::{Context, Poll, Waker};

const SECRET: &str = "fuzz-secret";

/// The core's futures never wait on the memory store: polling once finishes them.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

const METHODS: [&str; 6] = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"];
const WORDS: [&str; 40] = [
    "v1",
    "jobs",
    "tasks",
    "queue",
    "nodes",
    "health",
    "log",
    "heartbeat",
    "ack",
    "release",
    "cancel",
    "pause",
    "resume",
    "requeue",
    "drain",
    "default",
    "q",
    "job1",
    "job1.0",
    "job1.1",
    "job1.64",
    "..",
    ".",
    "%2e%2e",
    "%2F",
    "",
    "job1.-1",
    "job1.4294967296",
    "a b",
    "%00",
    "nodes",
    "x",
    "preview",
    "metrics",
    "job1.",
    ".0",
    "jobs?limit=2",
    "tasks?cursor=x",
    "é",
    "*",
];
const KEYS: [&str; 36] = [
    "type",
    "frames",
    "chunk_size",
    "params",
    "program",
    "args",
    "lease",
    "status",
    "result",
    "error",
    "node",
    "max",
    "tasks",
    "_id",
    "id",
    "priority",
    "tags",
    "name",
    "queue",
    "all",
    "progress",
    "done",
    "total",
    "activity",
    "log",
    "file",
    "output",
    "engine",
    "scene",
    "slots",
    "types",
    "max_attempts",
    "on_failure",
    "task_timeout_s",
    "format",
    "exit_code",
];
const STRINGS: [&str; 24] = [
    "command",
    "blender",
    "nexrender",
    "done",
    "failed",
    "fail",
    "continue",
    "1-10",
    "1,5,10-20",
    "1-100x5",
    "10-1",
    "1-4",
    "p",
    "{frame}",
    "gpu",
    "default",
    "q",
    "job1",
    "job1.0",
    "../x",
    "",
    "-1",
    "18446744073709551615",
    "1-999999999",
];

/// A JSON value made of the API's words, ids seen so far and fuzzer bytes.
fn value(u: &mut Unstructured, seen: &[String], depth: u32) -> Result<Value> {
    let pick = if depth > 3 {
        u.int_in_range(0..=5)?
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<i64>()? % 1_000_000),
        3 => json!(u.arbitrary::<u64>()?),
        4 => Value::String(u.choose(&STRINGS)?.to_string()),
        5 if !seen.is_empty() => Value::String(u.choose(seen)?.clone()),
        5 => Value::String(u.arbitrary::<String>()?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| value(u, seen, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ => object(u, seen, depth + 1)?,
    })
}

fn object(u: &mut Unstructured, seen: &[String], depth: u32) -> Result<Value> {
    let n = u.int_in_range(0..=6)?;
    let mut map = Map::new();
    for _ in 0..n {
        let key = if u.ratio(1, 16)? {
            u.arbitrary::<String>()?
        } else {
            u.choose(&KEYS)?.to_string()
        };
        map.insert(key, value(u, seen, depth)?);
    }
    Ok(Value::Object(map))
}

/// Collects every string in an answer that looks like an id, lease or token.
fn harvest(v: &Value, seen: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= 4 && s.len() <= 200 && !seen.contains(s) => {
            if seen.len() < 256 {
                seen.push(s.clone());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| harvest(x, seen)),
        Value::Object(o) => o.values().for_each(|x| harvest(x, seen)),
        _ => {}
    }
}

struct Farm {
    store: Memory,
    config: Config,
    ids: SeqIds,
    now: u64,
}

impl Farm {
    fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // The router only ever sees requests the HTTP layer could parse.
        let Ok(req) = req.body(Bytes::from(body)) else {
            return (0, Value::Null);
        };
        let ctx = Ctx {
            store: &self.store,
            config: &self.config,
            now_ms: self.now,
            ids: &self.ids,
        };
        let before = self.store.snapshot();
        let resp = run(handle(req, &ctx));
        let status = resp.status().as_u16();
        let parsed: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        assert_ne!(
            status, 500,
            "{method} {uri}: an internal error on the memory store: {parsed}"
        );
        if status >= 400 {
            assert!(
                parsed["error"]["code"].is_string() && parsed["error"]["message"].is_string(),
                "{method} {uri}: {status} without a JSON error: {:?}",
                String::from_utf8_lossy(resp.body())
            );
            assert!(
                self.store.snapshot() == before,
                "{method} {uri}: rejected with {status} ({parsed}) but the store changed"
            );
        }
        (status, parsed)
    }
}

fn one_sequence(u: &mut Unstructured) -> Result<()> {
    let mut config = Config::new(SECRET);
    config.lease_ms = 1_000;
    let mut farm = Farm {
        store: Memory::new(),
        config,
        ids: SeqIds::default(),
        now: 1_800_000_000_000,
    };
    let admin = vec![("authorization".to_string(), format!("Bearer {SECRET}"))];
    let mut seen: Vec<String> = Vec::new();
    // Something to act on: a job of 70 tasks (two segments) and an enrolled node.
    let spec = json!({"id": "job1", "type": "command", "frames": "1-70", "chunk_size": 1,
                      "params": {"program": "p", "args": ["{frame}"]}});
    let (_, job) = farm.send(
        "POST",
        "/v1/jobs",
        &admin,
        serde_json::to_vec(&spec).unwrap_or_default(),
    );
    harvest(&job, &mut seen);
    let (_, node) = farm.send("POST", "/v1/nodes", &admin, br#"{"name":"n"}"#.to_vec());
    harvest(&node, &mut seen);
    let node_token = node["token"].as_str().unwrap_or_default().to_string();

    let steps = u.int_in_range(1..=12)?;
    for _ in 0..steps {
        farm.now += u.int_in_range(0..=1_500)? as u64;
        let method = if u.ratio(1, 32)? {
            u.arbitrary::<String>()?
        } else {
            u.choose(&METHODS)?.to_string()
        };
        let mut path = String::new();
        let segments = u.int_in_range(0..=5)?;
        for i in 0..segments {
            path.push('/');
            let word = match u.int_in_range(0..=9)? {
                0 => u.arbitrary::<String>()?,
                1 | 2 if !seen.is_empty() => u.choose(&seen)?.clone(),
                _ if i == 0 => "v1".to_string(),
                _ => u.choose(&WORDS)?.to_string(),
            };
            path.push_str(&word);
        }
        if u.ratio(1, 4)? {
            path.push('?');
            path.push_str(&u.arbitrary::<String>()?);
        }
        let mut headers = Vec::new();
        match u.int_in_range(0..=5)? {
            0 => {}
            1 => headers.push(("authorization".into(), format!("Bearer {node_token}"))),
            2 => headers.push(("authorization".into(), u.arbitrary::<String>()?)),
            _ => headers.push(("authorization".into(), format!("Bearer {SECRET}"))),
        }
        if u.ratio(1, 8)? {
            headers.push(("accept".into(), "text/event-stream".into()));
        }
        let body = match u.int_in_range(0..=3)? {
            0 => u.arbitrary::<Vec<u8>>()?,
            1 => Vec::new(),
            _ => serde_json::to_vec(&object(u, &seen, 0)?).unwrap_or_default(),
        };
        let (_, answer) = farm.send(&method, &path, &headers, body);
        harvest(&answer, &mut seen);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = one_sequence(&mut u);
});
