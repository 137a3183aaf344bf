//! The job list: job ids in submission order, in pages of [`LIST_PAGE`], read newest first with
//! an opaque cursor. Like the claim index it is written before the job record and checked
//! against it on read (an entry whose job is absent or of another generation is skipped).

use super::cas::{self, Step, CAS_RETRIES};
use super::error::{Error, Result};
use super::records::{cond_for, load, save, Rec};
use super::Ctx;
use crate::store::{keys, Store};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Ids per page. Every submit reads, decodes, encodes and writes the tail page whole, so its
/// cost grows with this number: at 256 the list append was the largest single cost of a submit
/// (BENCHMARKS.md). A listing of 1,000 jobs reads 16 pages of 64, next to its 1,000 job reads.
/// Pages written when this was larger are read as they are.
pub const LIST_PAGE: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    tail: u64,
}

/// One listed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Job id.
    pub id: String,
    /// Generation it was submitted with.
    pub gen: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Page {
    jobs: Vec<Listed>,
}

/// Adds a job to the list; returns the page it landed on. A full tail page first moves the
/// tail on (its own write), so this may take more rounds than one CAS.
pub async fn append<S: Store>(ctx: &Ctx<'_, S>, entry: Listed) -> Result<u64> {
    cas::retry("the job list", CAS_RETRIES * 4, async || {
        let meta: Option<Rec<Meta>> = load(ctx.store, &keys::job_list_meta()).await?;
        let tail = meta.as_ref().map_or(0, |m| m.value.tail);
        let key = keys::job_list_page(tail);
        let page: Option<Rec<Page>> = load(ctx.store, &key).await?;
        let mut value = page.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        if value.jobs.len() >= LIST_PAGE {
            save(
                ctx.store,
                &keys::job_list_meta(),
                &Meta { tail: tail + 1 },
                cond_for(&meta),
            )
            .await?;
            return Ok(None);
        }
        value.jobs.push(entry.clone());
        let written = save(ctx.store, &key, &value, cond_for(&page)).await?;
        Ok(written.map(|_| tail))
    })
    .await
}

/// Removes a job from page `page`. Best effort: it runs after the job record was deleted (the
/// commit point of a delete), and a leftover entry is skipped on read.
pub async fn remove<S: Store>(ctx: &Ctx<'_, S>, page_no: u64, id: &str) -> Result<()> {
    let key = keys::job_list_page(page_no);
    let removed = cas::update(
        ctx.store,
        &key,
        "the job list",
        async |page: Option<Rec<Page>>| {
            let Some(rec) = page else {
                return Ok(Step::Stop(()));
            };
            let mut value = rec.value;
            value.jobs.retain(|j| j.id != id);
            Ok(Step::Write(value, ()))
        },
    )
    .await;
    cas::best_effort(removed, "job list entry of a deleted job").map(|_| ())
}

/// A position in the list: the page and how many of its entries are still to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    page: u64,
    remaining: usize,
}

impl Cursor {
    /// Opaque text form.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.page, self.remaining))
    }

    /// Parses the text form.
    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = || Error::field("cursor", "cursor is not one this server gave out");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (p, r) = raw.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            page: p.parse().map_err(|_| bad())?,
            remaining: r.parse().map_err(|_| bad())?,
        })
    }
}

/// Walks the list newest first from `cursor`, calling `visit` on each entry until it returns
/// `false` or `budget` entries were seen. Returns where to continue, `None` at the end.
pub async fn walk<S, F>(
    ctx: &Ctx<'_, S>,
    cursor: Option<Cursor>,
    mut budget: usize,
    mut visit: F,
) -> Result<Option<Cursor>>
where
    S: Store,
    F: AsyncFnMut(&Listed) -> Result<bool>,
{
    let mut pos = match cursor {
        Some(c) => c,
        None => {
            let meta: Option<Rec<Meta>> = load(ctx.store, &keys::job_list_meta()).await?;
            Cursor {
                page: meta.map_or(0, |m| m.value.tail),
                remaining: usize::MAX,
            }
        }
    };
    loop {
        let page: Option<Rec<Page>> = load(ctx.store, &keys::job_list_page(pos.page)).await?;
        let jobs = page.map(|p| p.value.jobs).unwrap_or_default();
        let mut i = pos.remaining.min(jobs.len());
        while i > 0 {
            if budget == 0 {
                return Ok(Some(Cursor {
                    page: pos.page,
                    remaining: i,
                }));
            }
            budget -= 1;
            i -= 1;
            if !visit(&jobs[i]).await? {
                return Ok((i > 0 || pos.page > 0).then_some(Cursor {
                    page: pos.page,
                    remaining: i,
                }));
            }
        }
        if pos.page == 0 {
            return Ok(None);
        }
        pos = Cursor {
            page: pos.page - 1,
            remaining: usize::MAX,
        };
    }
}
