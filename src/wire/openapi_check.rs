//! The OpenAPI document against the wire types: a full sample of each type (every optional
//! field present) must validate against its schema, and its fields must be exactly the schema's
//! properties — a field the server sends but the document leaves out, or one the document
//! promises but no type carries, fails here.

use super::blobs::{
    BlobCheck, BlobStored, BlobWanted, InputsPage, Missing, MissingBlob, OutputFile, OutputsPage,
    Upload,
};
use super::errors::{ErrorBody, ErrorDetail};
use super::health::{Health, StoreInfo};
use super::jobs::{Counts, Deleted, Job, JobList, JobPatch, JobState, JobSubmit, Requeue};
use super::metrics::{Metrics, Render, ScanLimits, Snapshot};
use super::nodes::{Enrol, Enrolment, Node, NodeList, ShownState};
use super::previews::PreviewStored;
use super::queue::{AckAnswer, ClaimedTask, Poll, PollAnswer, QueueSettings};
use super::tasks::{
    Ack, AckStatus, Heartbeat, HeartbeatAnswer, Release, Task, TaskLease, TaskList,
};
use super::tokens::{Role, SubmittedBy, Token, TokenCreate, TokenCreated, TokenList, WhoAmI};
use crate::core::blobs::FileEntry;
use crate::core::counters::Tally;
use crate::core::frames::FrameRange;
use crate::core::model::{
    Attempt, JobSpec, JobType, NodeState, OnFailure, Outcome, Progress, TaskState,
};
use crate::store::Consistency;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn doc() -> Value {
    serde_json::from_str(crate::core::dashboard::OPENAPI).expect("openapi.json is JSON")
}

/// The request body schema of `method path`, as a JSON pointer.
fn request(path: &str, method: &str) -> String {
    let path = path
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D");
    format!("#/paths/{path}/{method}/requestBody/content/application~1json/schema")
}

fn schema(doc: &Value, pointer: &str) -> Value {
    let mut at = doc
        .pointer(&percent_decode(pointer.trim_start_matches('#')))
        .cloned()
        .unwrap_or(Value::Null);
    while let Some(r) = at.get("$ref").and_then(Value::as_str) {
        at = doc
            .pointer(r.trim_start_matches('#'))
            .cloned()
            .unwrap_or(Value::Null);
    }
    at
}

fn percent_decode(s: &str) -> String {
    s.replace("%7B", "{").replace("%7D", "}")
}

/// Checks one sample; returns what is wrong with it.
fn problems<T: Serialize>(doc: &Value, pointer: &str, sample: &T) -> Vec<String> {
    let value = serde_json::to_value(sample).expect("a wire type serialises");
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!(pointer);
    let validator = match jsonschema::validator_for(&root) {
        Ok(v) => v,
        Err(e) => return vec![format!("{pointer}: does not compile: {e}")],
    };
    let mut out: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{pointer}: {e} at {}", e.instance_path()))
        .collect();
    let props: BTreeSet<String> = schema(doc, pointer)["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let sent: BTreeSet<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if props.is_empty() {
        out.push(format!("{pointer}: no properties found in the document"));
    }
    for missing in props.difference(&sent) {
        out.push(format!(
            "{pointer}: the document has `{missing}`, the type never sends it"
        ));
    }
    for extra in sent.difference(&props) {
        out.push(format!(
            "{pointer}: the type sends `{extra}`, the document does not have it"
        ));
    }
    out
}

/// The SHA-256 of no bytes.
const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn file_entry() -> FileEntry {
    FileEntry {
        path: "scene.blend".into(),
        sha256: H.into(),
        size: 0,
    }
}

fn frames() -> FrameRange {
    FrameRange {
        from: 1,
        to: 9,
        step: 2,
    }
}

fn progress() -> Progress {
    Progress { done: 1, total: 5 }
}

fn spec() -> JobSpec {
    JobSpec {
        id: "j1".into(),
        name: "shot 1".into(),
        kind: JobType::Blender,
        queue: "default".into(),
        priority: 50,
        tags: vec!["gpu".into()],
        params: json!({"file": "a.blend"}),
        frames: Some("1-9x2".into()),
        chunk_size: 5,
        max_attempts: 3,
        task_timeout_s: 3600,
        on_failure: OnFailure::Fail,
        inputs: Some(crate::core::blobs::inputs::Inputs {
            sha256: H.into(),
            files: 1,
            bytes: 0,
        }),
        after_jobs: vec!["j0".into()],
        on_dependency_failure: crate::core::model::DependencyFailure::Cancel,
        webhooks: vec![crate::wire::webhooks::Webhook {
            url: "https://hooks.example.com/…".into(),
            secret: String::new(),
        }],
        stages: vec!["j1-comp".into()],
        after_frames: true,
    }
}

fn job() -> Job {
    Job {
        spec: spec(),
        state: JobState::Active,
        paused: false,
        counts: Counts {
            total: 1,
            leased: 1,
            ..Counts::default()
        },
        frames_total: 5,
        frames_done: 1,
        progress: 0.2,
        created_ms: 1,
        updated_ms: 2,
        finished_ms: Some(3),
        error: Some("task 0 failed: exit 1".into()),
        waiting: Some("no node online".into()),
        submitted_by: Some(SubmittedBy {
            token_id: "0123456789abcdef".into(),
            name: "anna".into(),
        }),
    }
}

fn task() -> Task {
    Task {
        id: "j1.0".into(),
        job: "j1".into(),
        index: 0,
        frames: Some(frames()),
        state: TaskState::Leased,
        attempts: 1,
        failures: 0,
        failed_nodes: vec!["n0".into()],
        lease: Some(TaskLease {
            node: "n1".into(),
            expires_ms: 9,
            attempt: 1,
        }),
        progress: Some(progress()),
        activity: Some("Fra:1".into()),
        result: Some(json!({"exit_code": 0})),
        error: Some("exit 1".into()),
        history: vec![Attempt {
            attempt: 1,
            node: "n1".into(),
            started_ms: 1,
            ended_ms: Some(2),
            outcome: Some(Outcome::Completed),
            log_chunks: 1,
        }],
        held: true,
        updated_ms: 2,
    }
}

fn node() -> Node {
    Node {
        id: "n1".into(),
        name: "node one".into(),
        tags: vec!["gpu".into()],
        types: vec![JobType::Blender],
        slots: 2,
        state: ShownState::Draining,
        online: true,
        draining: true,
        queues: vec!["default".into()],
        last_seen_ms: 5,
        left_ms: Some(6),
        created_ms: 1,
    }
}

fn ack() -> Ack {
    Ack {
        id: "j1.0".into(),
        status: AckStatus::Failed,
        lease: "t".into(),
        result: Some(json!({"exit_code": 1})),
        error: Some(json!("exit 1")),
        outputs: vec![file_entry()],
    }
}

fn detail() -> ErrorDetail {
    ErrorDetail {
        code: "bad_request".into(),
        message: "name: too long".into(),
        field: Some("name".into()),
    }
}

fn claimed() -> ClaimedTask {
    ClaimedTask {
        id: "j1.0".into(),
        job: "j1".into(),
        job_name: "shot 1".into(),
        kind: JobType::Command,
        queue: "default".into(),
        lease: "t".into(),
        attempt: 1,
        lease_expires_ms: 9,
        lease_ms: 60_000,
        heartbeat_ms: 15_000,
        frames: Some(frames()),
        params: json!({"program": "touch"}),
        task_timeout_s: 60,
        inputs: Some(crate::core::blobs::inputs::Inputs {
            sha256: H.into(),
            files: 1,
            bytes: 0,
        }),
    }
}

fn metrics() -> Metrics {
    let mut s = Snapshot {
        counters: Tally::default(),
        tasks: Counts::default(),
        scanned_jobs: 1,
        scan_complete: true,
        nodes_seen_recently: 1,
        ..Snapshot::default()
    };
    s.jobs.insert("active".into(), 1);
    s.nodes.insert("awake".into(), 1);
    s.leases_by_node.insert("n1".into(), 1);
    s.renders_by_node.insert(
        "n1".into(),
        vec![Render {
            task: "j1.0".into(),
            job: "j1".into(),
            job_name: "shot 1".into(),
            frames: Some(frames()),
            progress: Some(progress()),
        }],
    );
    Metrics {
        snapshot: s,
        scan_limits: ScanLimits {
            jobs: 500,
            segments: 512,
        },
    }
}

#[test]
fn every_wire_type_matches_its_openapi_schema_field_for_field() {
    let d = doc();
    let c = |name: &str| format!("#/components/schemas/{name}");
    let submit = JobSubmit {
        id: Some("j1".into()),
        name: Some("shot 1".into()),
        kind: JobType::Blender,
        queue: Some("default".into()),
        priority: Some(50),
        tags: Some(vec!["gpu".into()]),
        params: Some(json!({"file": "a.blend"})),
        frames: Some("1-9".into()),
        chunk_size: Some(5),
        max_attempts: Some(3),
        task_timeout_s: Some(60),
        on_failure: Some(OnFailure::Continue),
        inputs: Some(vec![file_entry()]),
        after_jobs: Some(vec!["j0".into()]),
        on_dependency_failure: Some(crate::core::model::DependencyFailure::Fail),
        webhooks: Some(vec![crate::wire::webhooks::Webhook {
            url: "https://hooks.example.com/edgefarm".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        }]),
        stages: Some(vec![crate::wire::jobs::StageSubmit {
            name: "comp".into(),
            kind: JobType::Command,
            params: Some(json!({"program": "comp"})),
            frames: Some("1-9".into()),
            chunk_size: Some(1),
            tags: Some(vec!["cpu".into()]),
            max_attempts: Some(2),
            task_timeout_s: Some(600),
            on_failure: Some(OnFailure::Continue),
            per_frame: Some(true),
            on_dependency_failure: Some(crate::core::model::DependencyFailure::Continue),
            webhooks: None,
        }]),
        after_frames: Some(true),
    };
    let mut all = Vec::new();
    all.extend(problems(&d, &c("JobSpec"), &submit));
    all.extend(problems(&d, &c("Job"), &job()));
    all.extend(problems(
        &d,
        &c("JobList"),
        &JobList {
            jobs: vec![job()],
            next_cursor: Some("c".into()),
        },
    ));
    all.extend(problems(&d, &c("Task"), &task()));
    all.extend(problems(
        &d,
        &c("TaskList"),
        &TaskList {
            tasks: vec![task()],
            next_cursor: Some("2".into()),
        },
    ));
    all.extend(problems(&d, &c("Node"), &node()));
    all.extend(problems(
        &d,
        &c("Enrolment"),
        &Enrolment {
            node: node(),
            token: "efn_x".into(),
        },
    ));
    all.extend(problems(
        &d,
        &c("Deleted"),
        &Deleted {
            id: "j1".into(),
            deleted: true,
        },
    ));
    all.extend(problems(
        &d,
        &c("QueueSettings"),
        &QueueSettings {
            queue: "default".into(),
            interval: 2000,
            lease_ms: 60_000,
            heartbeat_ms: 15_000,
            max_tasks: 16,
        },
    ));
    all.extend(problems(&d, &c("Ack"), &ack()));
    all.extend(problems(
        &d,
        &c("Poll"),
        &Poll {
            node: Some("n1".into()),
            max: Some(2),
            types: Some(vec![JobType::Blender]),
            tags: Some(vec!["gpu".into()]),
            slots: Some(4),
            tasks: vec![ack()],
        },
    ));
    all.extend(problems(&d, &c("ClaimedTask"), &claimed()));
    let poll_answer = PollAnswer {
        tasks: vec![claimed()],
        acks: vec![
            AckAnswer {
                id: "j1.0".into(),
                ok: false,
                error: Some(detail()),
            },
            AckAnswer {
                id: "j1.1".into(),
                ok: true,
                error: None,
            },
        ],
        node_state: NodeState::Awake,
        interval: 2000,
    };
    all.extend(problems(&d, &c("PollAnswer"), &poll_answer));
    all.extend(problems(
        &d,
        &format!("{}/properties/acks/items", c("PollAnswer")),
        &poll_answer.acks[0],
    ));
    all.extend(problems(
        &d,
        &c("Heartbeat"),
        &Heartbeat {
            lease: "t".into(),
            progress: Some(progress()),
            activity: Some("Fra:1".into()),
            log: Some("rendering\n".into()),
        },
    ));
    all.extend(problems(
        &d,
        &c("HeartbeatAnswer"),
        &HeartbeatAnswer {
            keep_running: true,
            lease_expires_ms: Some(9),
            node_state: NodeState::Draining,
        },
    ));
    all.extend(problems(
        &d,
        &c("Preview"),
        &PreviewStored {
            job: "j1".into(),
            task: "j1.0".into(),
            node: "n1".into(),
            content_type: "image/png".into(),
            bytes: 10,
            received_ms: 1,
        },
    ));
    all.extend(problems(
        &d,
        &c("Health"),
        &Health {
            ok: true,
            version: "0.1.0".into(),
            store: StoreInfo {
                kind: "sqlite".into(),
                atomic_cas: true,
                consistency: Consistency::Strong,
                durable: true,
            },
        },
    ));
    all.extend(problems(&d, &c("Metrics"), &metrics()));
    all.extend(problems(
        &d,
        &c("Error"),
        &ErrorBody {
            error: detail(),
            keep_running: Some(false),
        },
    ));
    all.extend(problems(
        &d,
        &request("/v1/jobs/{id}", "patch"),
        &JobPatch {
            priority: Some(70),
            tags: Some(vec!["gpu".into()]),
        },
    ));
    all.extend(problems(
        &d,
        &request("/v1/jobs/{id}/{action}", "post"),
        &Requeue { all: Some(true) },
    ));
    all.extend(problems(
        &d,
        &request("/v1/tasks/{id}/release", "post"),
        &Release { lease: "t".into() },
    ));
    all.extend(problems(
        &d,
        &request("/v1/nodes", "post"),
        &Enrol {
            name: Some("n".into()),
            tags: Some(vec![]),
            types: Some(vec![JobType::Command]),
            slots: Some(2),
        },
    ));
    all.extend(problems(
        &d,
        &c("BlobCheck"),
        &BlobCheck {
            blobs: vec![BlobWanted {
                sha256: H.into(),
                size: 0,
            }],
        },
    ));
    let lacking = MissingBlob {
        sha256: H.into(),
        size: 0,
        upload: Upload {
            method: "PUT".into(),
            url: format!("https://bucket.example/blobs/{H}?X-Amz-Signature=0"),
            headers: [("x-amz-checksum-sha256".to_string(), "47DEQ=".to_string())].into(),
            confirm: Some(format!("/v1/blobs/{H}?size=0")),
            parts: Some(crate::wire::blobs::Parts {
                start: format!("/v1/blobs/{H}/parts?size=0"),
                part_bytes: 5 << 20,
            }),
        },
    };
    all.extend(problems(
        &d,
        &format!("{}/properties/missing/items", c("Missing")),
        &lacking,
    ));
    all.extend(problems(
        &d,
        &c("Missing"),
        &Missing {
            missing: vec![lacking],
            present: 1,
        },
    ));
    all.extend(problems(
        &d,
        &c("BlobStored"),
        &BlobStored {
            sha256: H.into(),
            size: 0,
            stored: true,
        },
    ));
    all.extend(problems(
        &d,
        &c("InputsPage"),
        &InputsPage {
            files: vec![file_entry()],
            next: Some("1".into()),
            sha256: Some(H.into()),
            total_files: 1,
            total_bytes: 0,
        },
    ));
    let output = OutputFile {
        task: "j1.0".into(),
        file: file_entry(),
        url: format!("/v1/blobs/{H}"),
    };
    all.extend(problems(
        &d,
        &format!("{}/properties/outputs/items", c("OutputsPage")),
        &output,
    ));
    all.extend(problems(
        &d,
        &c("OutputsPage"),
        &OutputsPage {
            outputs: vec![output],
            next: None,
        },
    ));
    all.extend(problems(&d, &c("FileEntry"), &file_entry()));
    let token = Token {
        id: "0123456789abcdef".into(),
        name: "anna".into(),
        role: Role::Submitter,
        queues: vec!["default".into()],
        max_priority: Some(60),
        expires_ms: Some(2),
        uses_left: Some(1),
        created_ms: 1,
    };
    all.extend(problems(&d, &c("Token"), &token));
    all.extend(problems(
        &d,
        &c("TokenCreated"),
        &TokenCreated {
            info: token.clone(),
            token: "eft_0123456789abcdef_00".into(),
        },
    ));
    all.extend(problems(
        &d,
        "#/paths/~1v1~1tokens/get/responses/200/content/application~1json/schema",
        &TokenList {
            tokens: vec![token],
        },
    ));
    all.extend(problems(
        &d,
        &request("/v1/tokens", "post"),
        &TokenCreate {
            name: "anna".into(),
            role: Role::Submitter,
            queues: Some(vec!["default".into()]),
            max_priority: Some(60),
            expires: Some("90d".into()),
            uses: Some(1),
        },
    ));
    all.extend(problems(
        &d,
        &c("WhoAmI"),
        &WhoAmI {
            role: Role::NodeJoin,
            token_id: Some("0123456789abcdef".into()),
            name: Some("anna".into()),
            node_id: Some("n1".into()),
        },
    ));
    all.extend(webhook_problems(&d));
    assert!(
        all.is_empty(),
        "wire types vs openapi.json:\n{}",
        all.join("\n")
    );
}

#[test]
fn wire_types_read_back_what_they_write() {
    // The node and the CLI read what the core writes: a round trip loses nothing.
    let j = job();
    let back: Job = serde_json::from_value(serde_json::to_value(&j).unwrap_or_default())
        .expect("a job reads back");
    assert_eq!(back, j);
    let m = metrics();
    let back: Metrics = serde_json::from_value(serde_json::to_value(&m).unwrap_or_default())
        .expect("metrics read back");
    assert_eq!(back, m);
    let o = OutputsPage {
        outputs: vec![OutputFile {
            task: "j1.0".into(),
            file: file_entry(),
            url: format!("/v1/blobs/{H}"),
        }],
        next: Some("1".into()),
    };
    let back: OutputsPage = serde_json::from_value(serde_json::to_value(&o).unwrap_or_default())
        .expect("outputs read back");
    assert_eq!(back, o);
    let n = NodeList {
        nodes: vec![node()],
    };
    let back: NodeList = serde_json::from_value(serde_json::to_value(&n).unwrap_or_default())
        .expect("nodes read back");
    assert_eq!(back, n);
}

fn webhook_problems(d: &Value) -> Vec<String> {
    use crate::wire::jobs::{Counts, JobState};
    use crate::wire::webhooks::*;
    let c = |name: &str| format!("#/components/schemas/{name}");
    let mut all = Vec::new();
    let event = Event {
        kind: "job.completed".into(),
        timestamp: "2026-12-02T17:00:00Z".into(),
        data: EventJob {
            id: "j1".into(),
            name: "shot 1".into(),
            kind: JobType::Blender,
            queue: "default".into(),
            state: JobState::Completed,
            counts: Counts::default(),
            frames_total: 9,
            frames_done: 9,
            created_ms: 1,
            finished_ms: Some(2),
            error: None,
            submitted_by: None,
            round: 0,
        },
    };
    all.extend(problems(d, &c("WebhookEvent"), &event));
    let delivery = Delivery {
        id: "msg_0".into(),
        event: "job.completed".into(),
        job: "j1".into(),
        url: "https://hooks.example.com/x".into(),
        state: DeliveryState::Pending,
        attempts: 1,
        created_ms: 1,
        last_attempt_ms: Some(2),
        last_status: Some(500),
        last_error: Some("the receiver answered 500".into()),
        next_attempt_ms: Some(3),
        delivered_ms: None,
    };
    all.extend(problems(
        d,
        "#/paths/~1v1~1webhooks~1deliveries/get/responses/200/content/application~1json/schema",
        &DeliveryList {
            deliveries: vec![delivery],
        },
    ));
    all.extend(problems(
        d,
        &c("Due"),
        &Due {
            requests: vec![Outgoing {
                delivery: "hook/j1/g/0/job.completed".into(),
                target: 0,
                url: "https://hooks.example.com/x".into(),
                headers: vec![["webhook-id".into(), "msg_0".into()]],
                body: "{}".into(),
            }],
            next_due_ms: Some(1),
        },
    ));
    all.extend(problems(d, &c("Reported"), &Reported { next_due_ms: None }));
    all.extend(problems(
        d,
        &request("/v1/webhooks/report", "post"),
        &Reports {
            reports: vec![Report {
                delivery: "hook/j1/g/0/job.completed".into(),
                target: 0,
                status: Some(204),
                error: Some("refused".into()),
            }],
        },
    ));
    all
}
