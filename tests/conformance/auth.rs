//! Credentials on every `/v1` route: without any, with a wrong or forged one, with a node token
//! on an admin route, with another node's token on a node's own things, with a removed node's
//! token, and with a personal token of every role (`core::access`: viewer, submitter, operator,
//! admin, node-join). Each refusal is 401 without credentials, 403 otherwise, and changes
//! nothing. Then the same routes with an allowed credential, so the table cannot pass by naming
//! routes that do not exist (credentials are checked before routing).

use crate::errors::rejected;
use crate::harness::Farm;
use serde_json::{json, Value};

/// Which node tokens may call a route (the farm secret and an admin token may call every one).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// No node token.
    Admin,
    /// The token of the node whose task / record it is.
    OwnNode,
    /// Any node token.
    AnyNode,
}

/// A personal token's role, as the table names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Who {
    Viewer,
    Submitter,
    Operator,
    NodeJoin,
}

const EVERY: [Who; 4] = [Who::Viewer, Who::Submitter, Who::Operator, Who::NodeJoin];
const READERS: &[Who] = &[Who::Viewer, Who::Submitter, Who::Operator];
const SUBMITTERS: &[Who] = &[Who::Submitter, Who::Operator];
const OPERATORS: &[Who] = &[Who::Operator];
const NOBODY: &[Who] = &[];

impl Who {
    fn role(self) -> &'static str {
        match self {
            Who::Viewer => "viewer",
            Who::Submitter => "submitter",
            Who::Operator => "operator",
            Who::NodeJoin => "node-join",
        }
    }
}

struct Route {
    method: &'static str,
    path: String,
    body: Value,
    access: Access,
    /// The personal roles (besides admin) allowed; a submitter's only jobs here are not its own.
    roles: &'static [Who],
}

fn route(
    method: &'static str,
    path: String,
    body: Value,
    access: Access,
    roles: &'static [Who],
) -> Route {
    Route {
        method,
        path,
        body,
        access,
        roles,
    }
}

async fn enrol(f: &Farm, name: &str) -> (String, String) {
    let r = f
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"name": name, "types": ["command"]})),
        )
        .await;
    assert_eq!(r.status, 201, "enrol {name}: {:?}", r.json());
    let b = r.json();
    (
        b["node"]["id"].as_str().unwrap_or_default().to_string(),
        b["token"].as_str().unwrap_or_default().to_string(),
    )
}

/// Creates a personal token with the farm secret: (id, token).
pub async fn token(f: &Farm, name: &str, role: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let r = f.call("POST", "/v1/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "create a {role} token: {:?}", r.json());
    let b = r.json();
    (
        b["id"].as_str().unwrap_or_default().to_string(),
        b["token"].as_str().unwrap_or_default().to_string(),
    )
}

/// Claims one task with a node token.
async fn claim_as(f: &Farm, token: &str) -> Value {
    let r = f
        .call_as(
            token,
            "POST",
            &format!("/v1/queue/{}", f.queue()),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "the node gets a task: {:?}", r.json());
    r.json()["tasks"][0].clone()
}

async fn every_route_refuses_missing_wrong_and_revoked_credentials(f: &Farm) {
    let job = f.submit(json!({"frames": "1-4"})).await;
    let jid = job["id"].as_str().unwrap_or_default().to_string();
    let (a, a_token) = enrol(f, "a").await;
    let (_, b_token) = enrol(f, "b").await;
    let (c, c_token) = enrol(f, "c").await;
    let task = claim_as(f, &a_token).await;
    let tid = task["_id"].as_str().unwrap_or_default().to_string();
    let lease = task["lease"].clone();
    claim_as(f, &c_token).await;
    assert_eq!(
        f.call("DELETE", &format!("/v1/nodes/{c}"), None)
            .await
            .status,
        200
    );
    let mut personal = Vec::new();
    for who in EVERY {
        let extra = match who {
            Who::NodeJoin => json!({"uses": 5}),
            _ => json!({}),
        };
        personal.push((who, token(f, who.role(), who.role(), extra).await.1));
    }
    let (_, admin_token) = token(f, "root", "admin", json!({})).await;
    let (spare, _) = token(f, "spare", "viewer", json!({})).await;
    let q = f.queue().to_string();
    let spec = json!({"type": "command", "queue": q, "params": {"program": "p"}});
    use Access::*;
    let routes = vec![
        route("GET", "/v1/whoami".into(), Value::Null, AnyNode, &EVERY),
        route("POST", "/v1/jobs".into(), spec, Admin, SUBMITTERS),
        route(
            "GET",
            format!("/v1/jobs?queue={q}"),
            Value::Null,
            Admin,
            READERS,
        ),
        route(
            "GET",
            format!("/v1/jobs/{jid}"),
            Value::Null,
            Admin,
            READERS,
        ),
        route(
            "GET",
            format!("/v1/jobs/{jid}/tasks"),
            Value::Null,
            Admin,
            READERS,
        ),
        route(
            "GET",
            format!("/v1/jobs/{jid}/outputs"),
            Value::Null,
            Admin,
            READERS,
        ),
        route(
            "GET",
            "/v1/metrics?format=json".into(),
            Value::Null,
            Admin,
            READERS,
        ),
        route(
            "PATCH",
            format!("/v1/jobs/{jid}"),
            json!({"priority": 80}),
            Admin,
            OPERATORS,
        ),
        route(
            "POST",
            format!("/v1/jobs/{jid}/pause"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "POST",
            format!("/v1/jobs/{jid}/resume"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "POST",
            format!("/v1/jobs/{jid}/requeue"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "POST",
            "/v1/nodes".into(),
            json!({"name": "x"}),
            Admin,
            &[Who::Operator, Who::NodeJoin],
        ),
        route("GET", "/v1/nodes".into(), Value::Null, Admin, READERS),
        route(
            "POST",
            format!("/v1/nodes/{a}/drain"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "POST",
            format!("/v1/nodes/{a}/resume"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "GET",
            format!("/v1/tasks/{tid}"),
            Value::Null,
            OwnNode,
            READERS,
        ),
        route(
            "GET",
            format!("/v1/tasks/{tid}/log"),
            Value::Null,
            OwnNode,
            READERS,
        ),
        route(
            "POST",
            format!("/v1/tasks/{tid}/heartbeat"),
            json!({"lease": lease, "activity": "x"}),
            OwnNode,
            NOBODY,
        ),
        route(
            "GET",
            format!("/v1/nodes/{a}"),
            Value::Null,
            OwnNode,
            READERS,
        ),
        route(
            "GET",
            format!("/v1/queue/{q}"),
            Value::Null,
            AnyNode,
            READERS,
        ),
        route("POST", format!("/v1/queue/{q}"), json!({}), AnyNode, NOBODY),
        route(
            "POST",
            "/v1/blobs/missing".into(),
            json!({"blobs": []}),
            AnyNode,
            SUBMITTERS,
        ),
        route("GET", "/v1/tokens".into(), Value::Null, Admin, NOBODY),
        route(
            "POST",
            "/v1/tokens".into(),
            json!({"name": "more", "role": "viewer"}),
            Admin,
            NOBODY,
        ),
        route(
            "DELETE",
            format!("/v1/tokens/{spare}"),
            Value::Null,
            Admin,
            NOBODY,
        ),
        route(
            "POST",
            format!("/v1/tasks/{tid}/release"),
            json!({"lease": lease}),
            OwnNode,
            NOBODY,
        ),
        route(
            "POST",
            format!("/v1/tasks/{tid}/ack"),
            json!({"lease": lease, "status": "done", "result": {"exit_code": 0}}),
            OwnNode,
            NOBODY,
        ),
        route(
            "POST",
            format!("/v1/jobs/{jid}/cancel"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "DELETE",
            format!("/v1/jobs/{jid}"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
        route(
            "DELETE",
            format!("/v1/nodes/{a}"),
            Value::Null,
            Admin,
            OPERATORS,
        ),
    ];
    let forged = format!("efn_{a}_00000000000000000000000000000000");
    let forged_personal = format!("eft_{spare}_00000000000000000000000000000000");
    for r in &routes {
        let body = if r.body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&r.body).unwrap_or_default()
        };
        let (m, p) = (r.method, r.path.as_str());
        rejected(f, m, p, &body, None, 401, None).await;
        rejected(f, m, p, &body, Some("wrong-secret"), 403, None).await;
        rejected(f, m, p, &body, Some(&forged), 403, None).await;
        rejected(f, m, p, &body, Some(&forged_personal), 403, None).await;
        rejected(f, m, p, &body, Some(&c_token), 403, None).await;
        let basic = f
            .raw(m, p, None, body.clone(), &[("authorization", "Basic YTpi")])
            .await;
        assert_eq!(
            basic.status, 401,
            "{m} {p}: a non-bearer scheme is no credential"
        );
        match r.access {
            Admin => rejected(f, m, p, &body, Some(&a_token), 403, None).await,
            OwnNode => rejected(f, m, p, &body, Some(&b_token), 403, None).await,
            AnyNode => {}
        }
        for (who, t) in &personal {
            if !r.roles.contains(who) {
                rejected(f, m, p, &body, Some(t), 403, None).await;
            }
        }
    }
    // An allowed credential reaches every route of the table (in an order where each still
    // applies): none of them is refused for its credentials, and none is unknown. A route that
    // changes nothing is tried with every allowed role; one that changes the farm with the
    // least of them (the admin token where no other role may).
    let reached = |r: &Route, resp: &crate::harness::Resp, who: &str| {
        assert!(
            !matches!(resp.status, 401 | 403 | 404 | 405),
            "{} {} as {who} answered {} {:?}",
            r.method,
            r.path,
            resp.status,
            resp.json()
        );
    };
    for r in &routes {
        let body = (!r.body.is_null()).then(|| r.body.clone());
        let allowed: Vec<&(Who, String)> = personal
            .iter()
            .filter(|(w, _)| r.roles.contains(w))
            .collect();
        if r.method == "GET" {
            for (who, t) in &allowed {
                let resp = f.call_as(t, r.method, &r.path, body.clone()).await;
                reached(r, &resp, who.role());
            }
        }
        let (who, token) = match (r.access, allowed.first()) {
            (OwnNode | AnyNode, _) if r.roles.is_empty() => ("node a", a_token.clone()),
            (_, Some((w, t))) if r.method != "GET" => (w.role(), t.clone()),
            _ => ("admin token", admin_token.clone()),
        };
        let resp = f.call_as(&token, r.method, &r.path, body).await;
        reached(r, &resp, who);
    }
}

async fn removing_a_node_hands_its_leases_to_other_nodes_at_once(f: &Farm) {
    let job = f.submit(json!({"frames": "1"})).await;
    let jid = job["id"].as_str().unwrap_or_default().to_string();
    let (gone, gone_token) = enrol(f, "gone").await;
    let (_, other_token) = enrol(f, "other").await;
    let old = claim_as(f, &gone_token).await;
    let tid = old["_id"].as_str().unwrap_or_default().to_string();
    let q = format!("/v1/queue/{}", f.queue());
    assert_eq!(
        f.call_as(&other_token, "POST", &q, Some(json!({})))
            .await
            .status,
        204,
        "the task is the removed-to-be node's"
    );
    assert_eq!(
        f.call("DELETE", &format!("/v1/nodes/{gone}"), None)
            .await
            .status,
        200
    );
    // No time passes: the lease has not expired, yet the task goes to the next claimer.
    let new = claim_as(f, &other_token).await;
    assert_eq!(
        new["_id"], old["_id"],
        "the removed node's task is claimable at once"
    );
    assert_eq!(new["attempt"], 2);
    let late = f
        .call_as(
            &gone_token,
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": old["lease"], "status": "done", "result": {"by": "gone"}})),
        )
        .await;
    assert_eq!(late.status, 403, "the removed node's token no longer works");
    let view = f
        .call("GET", &format!("/v1/tasks/{tid}"), None)
        .await
        .json();
    assert_eq!(view["state"], "leased", "still the new holder's: {view}");
    assert_eq!(view["history"][0]["outcome"], "released");
    assert_eq!(
        view["failures"], 0,
        "a removed node's task is not counted as failed"
    );
    let done = f
        .call_as(
            &other_token,
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": new["lease"], "status": "done", "result": {"by": "other"}})),
        )
        .await;
    assert_eq!(done.status, 200);
    assert_eq!(f.job(&jid).await["state"], "completed");
}

crate::cases!(
    every_route_refuses_missing_wrong_and_revoked_credentials,
    removing_a_node_hands_its_leases_to_other_nodes_at_once,
);
