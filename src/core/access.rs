//! Who may do what: the one permission table of the farm.
//!
//! Every `/v1` route is one [`Permission`] ([`permission_of`]); each role is granted each
//! permission fully, for its own things only, or not at all ([`grant`]); [`allow`] decides.
//! The router asks [`allow`] before it dispatches any route; the few rules that need the thing
//! acted on (a submitter's own job, its queues and priority limit; a node's own task) ask
//! [`allow_job`] / [`allow_submit`] / the handlers' own-node checks, which read the same grant.
//!
//! | permission | viewer | submitter | operator | admin | node | node-join |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `Read` (jobs, job tasks, outputs, previews, metrics, node list) | yes | yes | yes | yes | – | – |
//! | `ReadTask` (a task, its log, a node) | yes | yes | yes | yes | own | – |
//! | `ReadInputs` (job inputs, blobs, queue settings) | yes | yes | yes | yes | yes | – |
//! | `Submit` (a job) | – | own limits | yes | yes | – | – |
//! | `Upload` (blobs) | – | yes | yes | yes | yes | – |
//! | `Steer` (cancel, pause, resume, requeue, patch a job) | – | own jobs | yes | yes | – | – |
//! | `Delete` (a job and its history) | – | – | yes | yes | – | – |
//! | `Nodes` (drain, resume, remove a node) | – | – | yes | yes | – | – |
//! | `Enrol` (a node) | – | – | yes | yes | – | uses |
//! | `Work` (poll, heartbeat, ack, release, preview upload, leave) | – | – | – | yes | own | – |
//! | `Tokens` (create, list, revoke) | – | – | – | yes | – | – |
//! | `Webhooks` (the deliveries list) | – | – | yes | yes | – | – |
//! | `Deliver` (take due webhook requests, report them: the runtimes' own delivery) | – | – | – | yes | – | – |
//! | `WhoAmI` | yes | yes | yes | yes | yes | yes |

use super::auth::Caller;
use super::error::{Error, Result};
use super::model::{JobRecord, JobSpec};
use super::Ctx;
use crate::store::Store;
use crate::wire::tokens::Role;
use http::Method;

/// What a route does, as far as credentials are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the farm: jobs, job tasks, outputs, previews, metrics, the node list.
    Read,
    /// Read one task, its log, or one node (a node: only its own).
    ReadTask,
    /// What a node needs to run a task: job inputs, blobs, queue settings.
    ReadInputs,
    /// Submit a job.
    Submit,
    /// Upload blobs.
    Upload,
    /// Change a job: cancel, pause, resume, requeue, patch.
    Steer,
    /// Delete a job and its history.
    Delete,
    /// Drain, resume or remove a node.
    Nodes,
    /// Enrol a node.
    Enrol,
    /// A node's work: poll, heartbeat, ack, release, preview upload, leave.
    Work,
    /// Create, list and revoke tokens.
    Tokens,
    /// Read the webhook deliveries (their URLs may be credentials: not for viewers).
    Webhooks,
    /// Take due webhook requests and report how they went.
    Deliver,
    /// Ask who the credential is.
    WhoAmI,
}

/// How far a role holds a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Not at all.
    No,
    /// For its own things only: a submitter's jobs and limits, a node's tasks, a join token's
    /// uses.
    Own,
    /// Fully.
    Yes,
}

/// The table: how far `role` holds `perm`.
pub fn grant(role: Role, perm: Permission) -> Grant {
    use Grant::*;
    use Permission as P;
    match (role, perm) {
        (_, P::WhoAmI) => Yes,
        (Role::Admin, _) => Yes,
        (Role::Operator, P::Tokens | P::Work | P::Deliver) => No,
        (Role::Operator, _) => Yes,
        (Role::Submitter, P::Read | P::ReadTask | P::ReadInputs | P::Upload) => Yes,
        (Role::Submitter, P::Submit | P::Steer) => Own,
        (Role::Submitter, _) => No,
        (Role::Viewer, P::Read | P::ReadTask | P::ReadInputs) => Yes,
        (Role::Viewer, _) => No,
        (Role::Node, P::ReadInputs | P::Upload) => Yes,
        (Role::Node, P::ReadTask | P::Work) => Own,
        (Role::Node, _) => No,
        (Role::NodeJoin, P::Enrol) => Own,
        (Role::NodeJoin, _) => No,
    }
}

/// The permission a `/v1` route needs (`parts`: the path after `/v1`), or `None` for a route
/// that does not exist (the router answers 404 or 405 for it, after the credentials).
pub fn permission_of(method: &Method, parts: &[&str]) -> Option<Permission> {
    use Permission as P;
    let m = |x: &Method| method == x;
    Some(match parts {
        ["whoami"] if m(&Method::GET) => P::WhoAmI,
        ["tokens"] if m(&Method::GET) || m(&Method::POST) => P::Tokens,
        ["tokens", _] if m(&Method::DELETE) => P::Tokens,
        ["jobs"] if m(&Method::POST) => P::Submit,
        ["jobs"] if m(&Method::GET) => P::Read,
        ["jobs", _] if m(&Method::GET) => P::Read,
        ["jobs", _] if m(&Method::PATCH) => P::Steer,
        ["jobs", _] if m(&Method::DELETE) => P::Delete,
        ["jobs", _, "tasks" | "preview" | "outputs"] if m(&Method::GET) => P::Read,
        ["jobs", _, "inputs"] if m(&Method::GET) => P::ReadInputs,
        ["jobs", _, _] if m(&Method::POST) => P::Steer,
        ["blobs", "missing"] if m(&Method::POST) => P::Upload,
        ["blobs", _] if m(&Method::PUT) => P::Upload,
        ["blobs", _] if m(&Method::GET) || m(&Method::HEAD) => P::ReadInputs,
        ["tasks", _] | ["tasks", _, "log"] if m(&Method::GET) => P::ReadTask,
        ["tasks", _, "heartbeat" | "ack" | "release" | "preview"] if m(&Method::POST) => P::Work,
        ["preview"] | ["metrics"] if m(&Method::GET) => P::Read,
        ["queue", _] if m(&Method::GET) => P::ReadInputs,
        ["queue", _] if m(&Method::POST) => P::Work,
        ["nodes"] if m(&Method::POST) => P::Enrol,
        ["nodes"] if m(&Method::GET) => P::Read,
        ["nodes", _] if m(&Method::GET) => P::ReadTask,
        ["nodes", _] if m(&Method::DELETE) => P::Nodes,
        ["nodes", _, "leave"] if m(&Method::POST) => P::Work,
        ["nodes", _, _] if m(&Method::POST) => P::Nodes,
        ["webhooks", "deliveries"] if m(&Method::GET) => P::Webhooks,
        ["webhooks", "due" | "report"] if m(&Method::POST) => P::Deliver,
        _ => return None,
    })
}

fn refused(role: Role, perm: Permission) -> Error {
    let what = match perm {
        Permission::Read => "read the farm",
        Permission::ReadTask => "read this",
        Permission::ReadInputs => "read inputs",
        Permission::Submit => "submit jobs",
        Permission::Upload => "upload blobs",
        Permission::Steer => "change jobs",
        Permission::Delete => "delete jobs",
        Permission::Nodes => "drain, resume or remove nodes",
        Permission::Enrol => "enrol nodes",
        Permission::Work => "poll or report tasks (node tokens do)",
        Permission::Tokens => "manage tokens",
        Permission::Webhooks => "read webhook deliveries",
        Permission::Deliver => "deliver webhooks",
        Permission::WhoAmI => "ask who it is",
    };
    Error::Forbidden(format!("a {} credential cannot {what}", role.as_str()))
}

/// Whether `caller` may use a route needing `perm` at all (an `Own` grant passes here; the
/// handler or [`allow_job`] / [`allow_submit`] then checks what is its own).
pub fn allow(caller: &Caller, perm: Permission) -> Result<()> {
    let role = caller.role();
    match grant(role, perm) {
        Grant::No => Err(refused(role, perm)),
        Grant::Own | Grant::Yes => Ok(()),
    }
}

/// The check the router makes before any `/v1` route: the route's permission, and for a
/// submitter's change of a job, that the job is its own. A route that does not exist passes
/// (the router answers 404 or 405 for it).
pub async fn authorize<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    method: &Method,
    parts: &[&str],
) -> Result<()> {
    let Some(perm) = permission_of(method, parts) else {
        return Ok(());
    };
    allow(caller, perm)?;
    if perm == Permission::Steer && grant(caller.role(), perm) == Grant::Own {
        if let ["jobs", id, ..] = parts {
            let job = super::scheduler::task_ref::load_job(ctx, id).await?;
            allow_job(caller, &job.value)?;
        }
    }
    Ok(())
}

/// Whether `caller` may change `job`: fully granted, or a submitter's own job.
pub fn allow_job(caller: &Caller, job: &JobRecord) -> Result<()> {
    let role = caller.role();
    match grant(role, Permission::Steer) {
        Grant::Yes => Ok(()),
        Grant::No => Err(refused(role, Permission::Steer)),
        Grant::Own => {
            let own = match (caller.token(), &job.submitted_by) {
                (Some(t), Some(by)) => t.id == by.token_id,
                _ => false,
            };
            if own {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "job {} was not submitted with this token",
                    job.spec.id
                )))
            }
        }
    }
}

/// Whether `caller` may give a job priority `priority` (a submitter's `max_priority`).
pub fn allow_priority(caller: &Caller, priority: i64) -> Result<()> {
    match caller.token().and_then(|t| t.max_priority) {
        Some(max) if grant(caller.role(), Permission::Submit) == Grant::Own && priority > max => {
            Err(Error::Forbidden(format!(
                "priority {priority} is over this token's max_priority {max}"
            )))
        }
        _ => Ok(()),
    }
}

/// Whether `caller` may submit `spec`: fully granted, or within a submitter's queues and
/// priority.
pub fn allow_submit(caller: &Caller, spec: &JobSpec) -> Result<()> {
    let role = caller.role();
    match grant(role, Permission::Submit) {
        Grant::Yes => Ok(()),
        Grant::No => Err(refused(role, Permission::Submit)),
        Grant::Own => {
            if let Some(t) = caller.token() {
                if !t.queues.is_empty() && !t.queues.contains(&spec.queue) {
                    return Err(Error::Forbidden(format!(
                        "this token may submit only to the queues {}",
                        t.queues.join(", ")
                    )));
                }
            }
            allow_priority(caller, spec.priority)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 6] = [
        Role::Viewer,
        Role::Submitter,
        Role::Operator,
        Role::Admin,
        Role::Node,
        Role::NodeJoin,
    ];

    #[test]
    fn each_role_holds_at_least_what_the_role_below_it_holds() {
        use Permission::*;
        let all = [
            Read, ReadTask, ReadInputs, Submit, Upload, Steer, Delete, Nodes, Enrol, Work, Tokens,
            WhoAmI,
        ];
        let rank = |g: Grant| match g {
            Grant::No => 0,
            Grant::Own => 1,
            Grant::Yes => 2,
        };
        for ladder in [
            [Role::Viewer, Role::Submitter],
            [Role::Submitter, Role::Operator],
        ] {
            for p in all {
                assert!(
                    rank(grant(ladder[0], p)) <= rank(grant(ladder[1], p)),
                    "{ladder:?} {p:?}"
                );
            }
        }
        for p in all {
            assert_eq!(grant(Role::Admin, p), Grant::Yes, "{p:?}");
        }
        for r in ROLES {
            assert_eq!(grant(r, Tokens) == Grant::No, r != Role::Admin, "{r:?}");
        }
    }

    /// Every route the OpenAPI description documents (the conformance tour checks that real
    /// answers are documented) has a permission: a route added without one would be open to
    /// every credential.
    #[test]
    fn every_documented_route_has_a_permission() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::core::dashboard::OPENAPI).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut checked = 0;
        for (path, ops) in &paths {
            if matches!(path.as_str(), "/v1/health" | "/v1/openapi.json") {
                continue;
            }
            let parts: Vec<&str> = path
                .trim_start_matches("/v1/")
                .split('/')
                .map(|p| match p {
                    "{action}" => "cancel",
                    p if p.starts_with('{') => "x",
                    p => p,
                })
                .collect();
            for method in ops
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if !["get", "head", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                    continue;
                };
                assert!(permission_of(&m, &parts).is_some(), "{m} {path}");
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked} routes");
    }

    #[test]
    fn every_route_of_the_router_has_a_permission() {
        let routes: [(&Method, &[&str]); 6] = [
            (&Method::GET, &["jobs", "j"]),
            (&Method::POST, &["jobs", "j", "cancel"]),
            (&Method::POST, &["nodes", "n", "drain"]),
            (&Method::DELETE, &["tokens", "t"]),
            (&Method::HEAD, &["blobs", "b"]),
            (&Method::GET, &["whoami"]),
        ];
        for (m, p) in routes {
            assert!(permission_of(m, p).is_some(), "{m} {p:?}");
        }
        assert_eq!(permission_of(&Method::PUT, &["jobs"]), None);
        assert_eq!(
            permission_of(&Method::POST, &["nodes", "n", "leave"]),
            Some(Permission::Work)
        );
    }
}
