//! Durability under load: `kill-test` submits jobs and claims and acks tasks with concurrent
//! clients, sends SIGKILL to the server in the middle of it, and writes down every write the
//! server acknowledged (a 2xx to a submit, a 200 to an ack); after the server is restarted on
//! the same data, `kill-verify` checks that each of them is there: every acknowledged job
//! exists, every acknowledged ack left its task completed.
//!
//! What the server promises (README, `store::sqlite`): an answer is sent only after the batch
//! holding its writes committed with `synchronous = FULL`. A kill lands between or during
//! batches; requests whose batch had not committed get no answer (the connection drops), so
//! they are not in the list, and may or may not exist after the restart.

use crate::proto::{Client, Target};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The writes the server acknowledged before it was killed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Acknowledged {
    pub jobs: Vec<String>,
    /// Task ids (`{job}.{index}`) whose ack was answered 200.
    pub completed: Vec<String>,
}

/// Runs submitters and pickers, kills `pid` after `kill_after`, returns what was acknowledged.
pub async fn run(
    target: &Target,
    pid: u32,
    clients: usize,
    kill_after: Duration,
) -> anyhow::Result<Acknowledged> {
    let killed = Arc::new(AtomicBool::new(false));
    // Every loop ends at its first error (the kill) or at this deadline.
    let deadline = Instant::now() + kill_after + Duration::from_secs(10);
    let mut set = JoinSet::new();
    for i in 0..clients {
        let c = Client::new(target, format!("kill-submit-{i}"))?;
        set.spawn(async move {
            let mut out = Acknowledged::default();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                match c.submit(n).await {
                    Ok((id, _)) => out.jobs.push(id),
                    Err(_) => break,
                }
            }
            out
        });
        let p = Client::new(target, format!("kill-picker-{i}"))?;
        set.spawn(async move {
            let mut out = Acknowledged::default();
            while Instant::now() < deadline {
                match p.claim_one().await {
                    Ok(Some((id, lease))) => match p.ack(&id, &lease).await {
                        Ok(()) => out.completed.push(id),
                        Err(_) => break,
                    },
                    Ok(None) => tokio::time::sleep(Duration::from_millis(2)).await,
                    Err(_) => break,
                }
            }
            out
        });
    }
    let killer = {
        let killed = killed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(kill_after).await;
            // SAFETY: kill(2) with a pid the caller named as the server's; no memory involved.
            let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            killed.store(rc == 0, Ordering::Relaxed);
        })
    };
    let mut all = Acknowledged::default();
    while let Some(done) = set.join_next().await {
        let part = done?;
        all.jobs.extend(part.jobs);
        all.completed.extend(part.completed);
    }
    killer.await?;
    anyhow::ensure!(
        killed.load(Ordering::Relaxed),
        "could not send SIGKILL to {pid}"
    );
    Ok(all)
}

/// Checks every acknowledged write against the restarted server; returns the missing ones.
pub async fn verify(target: &Target, acked: &Acknowledged) -> anyhow::Result<Vec<String>> {
    let c = Client::new(target, "kill-verify".into())?;
    let mut missing = Vec::new();
    for id in &acked.jobs {
        if c.job(id).await?.is_none() {
            missing.push(format!("job {id}"));
        }
    }
    for task in &acked.completed {
        // Jobs of one task: the job view counts its completed tasks.
        let job = task.rsplit_once('.').map_or(task.as_str(), |(j, _)| j);
        let done = c
            .job(job)
            .await?
            .and_then(|v| v["counts"]["completed"].as_u64())
            .unwrap_or(0);
        if done == 0 {
            missing.push(format!("completion of task {task}"));
        }
    }
    Ok(missing)
}
