//! `--follow` and `edgefarm follow ID`: a job's progress until it ends. On a terminal a live
//! bar (frames done of total, rate, ETA, failed tasks, why it waits); piped or redirected, one
//! plain line per change, so a log file or CI output shows progress as it happens. It polls
//! `GET /v1/jobs/{id}` twice a second rather than holding an event stream open, so it works the
//! same against every runtime, including those that cannot stream.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::wire::jobs::{Job, JobState};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::api;
use super::settings::ClientArgs;
use crate::node::client::{enc, Client};

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Job id.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `edgefarm follow ID`.
pub async fn run(args: FollowArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    follow(&client, &args.id, args.client.json).await
}

/// What one look at the job shows; a new line is printed (piped) when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    state: String,
    done: u64,
    total: u64,
    failed: u64,
    waiting: Option<String>,
    error: Option<String>,
}

/// Follows job `id` to its end; exit 0 only if it completed.
pub async fn follow(client: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/jobs/{}", enc(id));
    let live = !json && std::io::stdout().is_terminal();
    let bar = if live {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {prefix} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let started = Instant::now();
    let mut rate = Rate::default();
    let mut last: Option<Seen> = None;
    let mut failures = 0u32;
    let job = loop {
        let job: Job = match api::get(client, &path).await {
            Ok(job) => {
                failures = 0;
                job
            }
            // Ride out a short outage of the server; give up after about a minute.
            Err(e) if failures < 120 => {
                failures += 1;
                if live {
                    bar.set_message(format!("server unreachable: {e}"));
                } else if failures == 1 && !json {
                    println!("{} server unreachable: {e}", clock(started));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let seen = seen(&job);
        rate.observe(seen.done);
        let (unit, short) = unit_of(&job);
        let detail = describe(&seen, &rate, short);
        if live {
            bar.set_length(seen.total);
            bar.set_position(seen.done);
            bar.set_prefix(unit);
            bar.set_message(detail);
        } else if !json && last.as_ref() != Some(&seen) {
            println!(
                "{} {}/{} {unit} {detail}",
                clock(started),
                seen.done,
                seen.total
            );
        }
        let finished = job.state.is_finished();
        last = Some(seen);
        if finished {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish_and_clear();
    let state = job.state.as_str();
    if json {
        api::print_json(&job);
    } else {
        let seen = seen(&job);
        let (unit, _) = unit_of(&job);
        let took = match (job.finished_ms, job.created_ms) {
            (Some(end), start) if end >= start => {
                format!(" in {}", duration(Duration::from_millis(end - start)))
            }
            _ => String::new(),
        };
        println!(
            "job {id} {state}: {}/{} {unit}{took}",
            seen.done, seen.total
        );
        if let Some(error) = &seen.error {
            println!("error: {error}");
        } else if state == "failed" {
            println!("see `edgefarm job {id}` for the failed tasks and their logs");
        }
    }
    Ok(if job.state == JobState::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn seen(job: &Job) -> Seen {
    let (done, total) = done_of(job);
    let text = |t: &Option<String>| t.clone().filter(|s| !s.is_empty());
    Seen {
        state: job.state.as_str().to_string(),
        done,
        total,
        failed: job.counts.failed,
        waiting: text(&job.waiting),
        error: text(&job.error),
    }
}

/// `active, 1.2 fr/s, ETA 40s, 1 failed task` and why it waits or failed, if it says.
fn describe(seen: &Seen, rate: &Rate, unit: &str) -> String {
    let mut parts = vec![seen.state.clone()];
    if let Some(per_s) = rate.per_s() {
        parts.push(format_rate(per_s, unit));
        if seen.state == "active" && seen.done < seen.total {
            let left = (seen.total - seen.done) as f64 / per_s;
            parts.push(format!("ETA {}", duration(Duration::from_secs_f64(left))));
        }
    }
    if seen.failed > 0 {
        let s = if seen.failed == 1 { "" } else { "s" };
        parts.push(format!("{} failed task{s}", seen.failed));
    }
    if let Some(w) = &seen.waiting {
        parts.push(format!("waiting: {w}"));
    }
    if let Some(e) = &seen.error {
        parts.push(format!("error: {}", e.lines().next().unwrap_or("")));
    }
    parts.join(", ")
}

/// Progress per second since the first look at the job; nothing until something got done
/// (an ETA before the first frame would be a guess, shown as `ETA 0s` before).
#[derive(Debug, Default)]
struct Rate {
    first: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
}

impl Rate {
    fn observe(&mut self, done: u64) {
        let now = Instant::now();
        let first = *self.first.get_or_insert((now, done));
        if done > first.1 && self.last.is_none_or(|(_, d)| d != done) {
            self.last = Some((now, done));
        }
    }

    fn per_s(&self) -> Option<f64> {
        let ((t0, d0), (t1, d1)) = (self.first?, self.last?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (d1 > d0 && secs > 0.0).then(|| (d1 - d0) as f64 / secs)
    }
}

/// `3.4 fr/s`, `12 fr/min`, `0.5 fr/min`: two significant digits at most.
pub fn format_rate(per_s: f64, unit: &str) -> String {
    let (value, per) = if per_s >= 1.0 {
        (per_s, "s")
    } else if per_s * 60.0 >= 1.0 {
        (per_s * 60.0, "min")
    } else {
        (per_s * 3600.0, "h")
    };
    if value >= 10.0 {
        format!("{value:.0} {unit}/{per}")
    } else {
        format!("{value:.1} {unit}/{per}")
    }
}

/// `45s`, `3m 05s`, `2h 07m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Time since following began, `[mm:ss]`, at the start of each piped line.
fn clock(since: Instant) -> String {
    let s = since.elapsed().as_secs();
    format!("[{:02}:{:02}]", s / 60, s % 60)
}

/// Frames done of total, or tasks when the job has no frame range.
fn done_of(job: &Job) -> (u64, u64) {
    if job.frames_total > 0 {
        (job.frames_done, job.frames_total)
    } else {
        (job.counts.completed, job.counts.total)
    }
}

/// The unit, long and short: frames, or tasks for a job without frames.
fn unit_of(job: &Job) -> (&'static str, &'static str) {
    if job.frames_total > 0 {
        ("frames", "fr")
    } else {
        ("tasks", "tasks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_at_most_two_significant_digits() {
        assert_eq!(format_rate(3.4284, "fr"), "3.4 fr/s");
        assert_eq!(format_rate(12.7, "fr"), "13 fr/s");
        assert_eq!(format_rate(0.2, "fr"), "12 fr/min");
        assert_eq!(format_rate(0.001, "tasks"), "3.6 tasks/h");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(duration(Duration::from_secs(7_620)), "2h 07m");
    }

    #[test]
    fn no_rate_and_no_eta_before_anything_is_done() {
        let mut rate = Rate::default();
        rate.observe(0);
        rate.observe(0);
        let seen = Seen {
            state: "active".into(),
            done: 0,
            total: 10,
            failed: 0,
            waiting: None,
            error: None,
        };
        assert_eq!(describe(&seen, &rate, "fr"), "active");
    }
}
