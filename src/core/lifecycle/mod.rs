//! The job lifecycle: every change of a job as a whole, for `/v1` (`api/jobs.rs`) and the
//! nexrender façade (`nexrender/routes.rs`) alike. The handlers parse requests and shape
//! answers; the rules of what a job may go through live here.
//!
//! - `create.rs`: a new job: list entry, segments and index entries first, the job record last
//!   (the commit point); a re-submit of the same spec is the same job.
//! - `steer.rs`: cancel, pause, resume, requeue, priority and tags, delete.
//! - `depend.rs`: jobs waiting for other jobs (`after_jobs`): released when those complete,
//!   ended when one fails.
//! - `rewait.rs`: a requeued job's dependents wait for it again, down the chain, so what used
//!   its old frames runs again on the new ones.
//! - `ended.rs`: the one hook after any change that may have ended a job (dependents, webhooks).
//! - `per_frame.rs`: jobs waiting frame by frame (`after_frames`): each held task released
//!   by the ack that completes the last task rendering its frames.
//! - `end.rs`: a job ending early: fail-fast after a task ran out of attempts (the ack path and
//!   the claim), and the cancel of its remaining tasks.
//!
//! A job's state is not stored: it is rolled up from its flags (`canceled`, `failed`, `paused`)
//! and its tasks' states (`rollup.rs`). The flags are written first, by one compare-and-swap of
//! the job record ([`update_job`]); task states follow, one segment at a time, each through the
//! task state machine (`scheduler/transition.rs`). The claim reads the flags (the job rules of
//! `scheduler/claimable.rs`), so a job stops being claimed as soon as its flag is written, even
//! if the tidying of its tasks is cut short.

mod create;
pub mod depend;
mod end;
mod ended;
pub mod per_frame;
mod rewait;
mod steer;

pub use create::{create, index_segments, submit, Submitted};
pub use end::{cancel_remaining, fail_job};
pub use ended::{ended, ended_after_ack};
pub use steer::{act, delete, steer, Action};

use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, TaskState};
use crate::core::records::Rec;
use crate::core::rollup;
use crate::core::Ctx;
use crate::store::{keys, Store};

/// Read-modify-CAS of a job record (`core::cas`): `change` sees the freshly read record on
/// every try; 404 when the job does not exist.
pub async fn update_job<S, F>(ctx: &Ctx<'_, S>, id: &str, mut change: F) -> Result<JobRecord>
where
    S: Store,
    F: FnMut(&mut JobRecord) -> Result<()>,
{
    let what = format!("job {id}");
    cas::update(
        ctx.store,
        &keys::job(id),
        &what,
        async |rec: Option<Rec<JobRecord>>| {
            let mut job = rec
                .ok_or_else(|| Error::NotFound(format!("job {id}")))?
                .value;
            change(&mut job)?;
            job.updated_ms = ctx.now_ms;
            Ok(Step::Write(job.clone(), job))
        },
    )
    .await
}

/// Clears what ended a job (cancel, fail-fast): it runs again.
pub fn reopen(job: &mut JobRecord) {
    job.canceled = false;
    job.failed = false;
    job.ended_ms = None;
}

/// Segments that still have queued or leased tasks (held ones do not count: a segment whose
/// only work is held gets its entry when a task of it is released, `per_frame`).
async fn live_segments<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<Vec<u32>> {
    let segs = rollup::segments(ctx.store, job).await?;
    Ok((0..job.segments())
        .zip(segs.iter())
        .filter(|(_, s)| {
            s.value
                .tasks
                .iter()
                .any(|t| matches!(t.state, TaskState::Queued | TaskState::Leased) && !t.held)
        })
        .map(|(k, _)| k)
        .collect())
}
