//! `edgefarm gc`: delete the blobs no job references that are older than `--older-than`, from
//! the data dir of `edgefarm serve` (and from its bucket when it keeps blobs in one). The rule
//! is the core's (`core::blobs::gc`); this file finds the candidates and deletes. It may run
//! while the server runs: it only deletes, a record by compare-and-swap before its bytes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;

use super::UsageError;
use crate::blob::Blobs;
use crate::core::blobs::gc;
use crate::core::{Config, Ctx, SeqIds};
use crate::runtime::native::S3Args;
use crate::store::sqlite::Sqlite;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// The server's data directory (`edgefarm serve --data`).
    #[arg(long, env = "EDGEFARM_DATA", default_value = "edgefarm-data")]
    data: PathBuf,
    /// Only blobs stored longer ago than this: `90s`, `30m`, `12h`, `7d` (uploads for a submit
    /// in flight and outputs not yet acked are younger).
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    older_than: Duration,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    s3: S3Args,
}

/// `90s`, `30m`, `12h`, `7d` (a bare number is seconds).
fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a whole number and a unit (s, m, h, d), e.g. 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
struct Report {
    deleted: Vec<Gone>,
    deleted_files: u64,
    freed_bytes: u64,
    kept_referenced: u64,
    kept_young: u64,
    dry_run: bool,
}

#[derive(Debug, Serialize)]
struct Gone {
    sha256: String,
    size: u64,
}

/// Runs `edgefarm gc`.
pub async fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let db = args.data.join("edgefarm.db");
    if !db.is_file() {
        return Err(UsageError(format!(
            "{}: no edgefarm database here (give the data dir of `edgefarm serve` with --data)",
            db.display()
        ))
        .into());
    }
    let store = Sqlite::open(&db)?;
    let mut config = Config::new("edgefarm-gc");
    config.bucket = args.s3.bucket().map_err(UsageError)?;
    let now = SystemTime::now();
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let older_than_ms = args.older_than.as_millis() as u64;
    let ids = SeqIds::default();
    let ctx = Ctx {
        store: &store,
        config: &config,
        now_ms,
        ids: &ids,
        notes: Default::default(),
    };
    let referenced = gc::referenced(&ctx).await?;
    let files = crate::blob::fs::FsBlobs::existing(&args.data.join("blobs"));
    let bucket_http = match &config.bucket {
        Some(_) => Some(crate::net::bucket_client()?),
        None => None,
    };
    let mut report = Report {
        dry_run: args.dry_run,
        ..Report::default()
    };
    let mut recorded = std::collections::BTreeSet::new();
    for key in store.keys_with_prefix("blob/")? {
        let sha = key.trim_start_matches("blob/").to_string();
        recorded.insert(sha.clone());
        let Some((rec, version)) = gc::record_version(&ctx, &sha).await? else {
            continue;
        };
        if !gc::is_garbage(&sha, &rec, &referenced, now_ms, older_than_ms) {
            if referenced.contains(&sha) {
                report.kept_referenced += 1;
            } else {
                report.kept_young += 1;
            }
            continue;
        }
        if !args.dry_run {
            if !gc::forget(&ctx, &sha, version).await? {
                continue;
            }
            match (&config.bucket, &bucket_http) {
                (Some(bucket), Some(http)) => {
                    let resp = http.delete(bucket.delete(&sha, now_ms)).send().await?;
                    let status = resp.status();
                    anyhow::ensure!(
                        status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
                        "deleting blob {sha} from the bucket: {status} {}",
                        resp.text().await.unwrap_or_default()
                    );
                }
                _ => {
                    files.delete(&sha).await?;
                }
            }
        }
        report.deleted.push(Gone {
            sha256: sha,
            size: rec.size,
        });
        report.freed_bytes += rec.size;
    }
    // Files without a record (a crash between storing the bytes and recording them), by the
    // same age, taken from the file's time.
    if config.bucket.is_none() {
        for (sha, size, modified) in files.list()? {
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age >= args.older_than);
            if recorded.contains(&sha) || referenced.contains(&sha) || !old {
                continue;
            }
            if !args.dry_run {
                files.delete(&sha).await?;
            }
            report.deleted_files += 1;
            report.deleted.push(Gone { sha256: sha, size });
            report.freed_bytes += size;
        }
    }
    if args.json {
        super::api::print_json(&serde_json::to_value(&report)?);
    } else {
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for g in &report.deleted {
            println!("{verb} {} ({} bytes)", g.sha256, g.size);
        }
        println!(
            "{verb} {} blob{}, {:.1} MiB freed{}; kept {} referenced by a job, {} younger than {:?}",
            report.deleted.len(),
            if report.deleted.len() == 1 { "" } else { "s" },
            report.freed_bytes as f64 / (1 << 20) as f64,
            if args.dry_run { " (dry run)" } else { "" },
            report.kept_referenced,
            report.kept_young,
            args.older_than
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert!(parse_age("7w").is_err());
        assert!(parse_age("d").is_err());
    }
}
