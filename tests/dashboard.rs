//! The dashboard in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
//! installed by scripts/test) against `edgefarm serve`, with a simple node loop rendering tasks.
//! It checks that the page shows a job reaching 100 %, that its cancel button cancels a job and
//! that the preview appears; then it measures the page with 1,000 jobs (100,000 tasks). The
//! screenshots and the numbers are left in `tests/output/` for CI to keep.

#[path = "support/mini_node.rs"]
mod mini_node;
#[path = "support/png.rs"]
mod png;
#[path = "support/webdriver.rs"]
mod webdriver;

use futures_util::StreamExt;
use mini_node::{node_loop, Api, SECRET};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webdriver::Browser;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// Kills a spawned process when the test ends, however it ends.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_http(url: &str) {
    for _ in 0..400 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} did not answer");
}

fn output_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/output");
    std::fs::create_dir_all(&dir).expect("tests/output");
    dir
}

fn row(job: &str) -> String {
    format!("tr[data-job=\"{job}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_progress_cancels_and_previews_in_a_browser() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
        if std::env::var("EDGEFARM_SKIP_BROWSER").is_ok() {
            eprintln!("EDGEFARM_SKIP_BROWSER set and no chromium: the browser test did not run");
            return;
        }
        panic!("the dashboard test needs Chromium: apt-get install chromium chromium-driver (scripts/test does)");
    }
    let (port, driver_port) = (free_port(), free_port());
    let data = tempfile::tempdir().expect("tempdir");
    let _server = Reaped(
        Command::new(env!("CARGO_BIN_EXE_edgefarm"))
            .args([
                "serve",
                "--memory",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--secret",
                SECRET,
            ])
            .args([
                "--lease-ms",
                "10000",
                "--heartbeat-ms",
                "1000",
                "--poll-ms",
                "200",
            ])
            .arg("--data")
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("edgefarm serve starts"),
    );
    let _driver = Reaped(
        Command::new(DRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let driver = format!("http://127.0.0.1:{driver_port}");
    wait_http(&format!("{base}/v1/health")).await;
    wait_http(&format!("{driver}/status")).await;
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let node = tokio::spawn(node_loop(api.clone(), stop.clone()));
    let out = output_dir();
    let profile = tempfile::tempdir().expect("profile dir");
    let b = Browser::start(&driver, CHROMIUM, profile.path())
        .await
        .expect("a browser session");
    let result = tour(&b, &api, &base, &out).await;
    if result.is_err() {
        let _ = b.screenshot(&out.join("dashboard-failure.png")).await;
    }
    b.quit().await;
    stop.store(true, Ordering::Relaxed);
    let _ = node.await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn tour(b: &Browser, api: &Api, base: &str, out: &std::path::Path) -> Result<(), String> {
    let wait = Duration::from_secs(60);
    b.goto(base).await?;
    b.type_into("#secret", SECRET).await?;
    b.click("#connect").await?;
    b.wait_for(
        "the login to close",
        "return document.querySelector('#login').classList.contains('hide')",
        wait,
    )
    .await?;

    let hero = api.submit(json!({"name": "sh010 hero – beauty", "type": "command", "frames": "1-24", "chunk_size": 4,
        "params": {"program": "touchframe", "args": ["{frame}"]}})).await;
    let held = api.submit(json!({"name": "sh030 fx – held for review", "type": "command", "queue": "review", "frames": "1-48", "chunk_size": 8,
        "params": {"program": "touchframe", "args": ["{frame}"]}})).await;
    b.wait_for(
        "the hero job to reach 100 %",
        &format!(
            "const r = document.querySelector('{} .pct'); return !!r && r.textContent === '100 %'",
            row(&hero)
        ),
        wait,
    )
    .await?;

    let cancel = format!("{} button[data-act=\"cancel\"]", row(&held));
    b.click(&cancel).await?;
    b.click(&cancel).await?; // the button asks to be clicked again to confirm
    b.wait_for("the held job to show canceled", &format!("const r = document.querySelector('{} .state'); return !!r && r.textContent === 'canceled'", row(&held)), wait).await?;
    let (_, job) = api
        .call("GET", &format!("/v1/jobs/{held}"), SECRET, None)
        .await;
    if job["state"] != "canceled" {
        return Err(format!(
            "the cancel button should cancel the job, it is {}",
            job["state"]
        ));
    }
    b.wait_for("the farm preview image", "const i = document.querySelector('#farm-preview img'); return !!i && i.complete && i.naturalWidth > 0", wait).await?;

    // A second job still rendering when the screenshot is taken, selected to show its frame strip.
    let shot = api.submit(json!({"name": "sh020 crowd – wide", "type": "command", "frames": "1001-1120", "chunk_size": 6, "priority": 60,
        "params": {"program": "touchframe", "args": ["{frame}"]}})).await;
    b.wait_for(
        "the crowd job row",
        &format!("return !!document.querySelector('{}')", row(&shot)),
        wait,
    )
    .await?;
    b.click(&format!("{} .name", row(&shot))).await?;
    b.wait_for(
        "some of its tasks to render",
        "return document.querySelectorAll('#strip i.completed').length >= 3",
        wait,
    )
    .await?;
    b.wait_for(
        "its preview",
        "const i = document.querySelector('#job-preview img'); return !!i && i.naturalWidth > 0",
        wait,
    )
    .await?;
    let tip = b
        .exec(
            "const c = document.querySelector('#strip i.completed'); \
        c.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 40, clientY: 360})); \
        return document.querySelector('#tip').textContent",
            json!([]),
        )
        .await?;
    let tip = tip.as_str().unwrap_or("");
    if !(tip.contains("node: render-01") && tip.contains("attempt 1")) {
        return Err(format!(
            "hovering a task should name its node and attempt, got {tip:?}"
        ));
    }
    b.screenshot(&out.join("dashboard-screenshot.png")).await?;

    let report = bulk(b, api, base).await?;
    b.screenshot(&out.join("dashboard-1000-jobs.png")).await?;
    println!("{report}");
    std::fs::write(out.join("dashboard-report.txt"), &report).map_err(|e| e.to_string())
}

/// Submits 1,000 jobs of 100 tasks and measures how long the page takes to show them.
async fn bulk(b: &Browser, api: &Api, base: &str) -> Result<String, String> {
    let page = reqwest::get(format!("{base}/"))
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let specs = (0..1000).map(|i| json!({"name": format!("bulk {i:04}"), "type": "command", "queue": "bulk", "frames": "1-100", "chunk_size": 1,
        "params": {"program": "touchframe", "args": ["{frame}"]}}));
    futures_util::stream::iter(specs)
        .map(|s| api.submit(s))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let submit_s = started.elapsed().as_secs_f64();
    let t = b.exec_async("const done = arguments[0]; const s = document.querySelector('#page-size'); s.value = '1000'; \
        const t0 = performance.now(); s.dispatchEvent(new Event('change')); \
        (function poll() { if (document.querySelectorAll('#jobs tbody tr').length >= 1000) done(performance.now() - t0); else setTimeout(poll, 10); })();", json!([])).await?;
    let thousand_ms = t.as_f64().unwrap_or(f64::NAN);
    let dom_ms = b
        .exec("return window.edgefarmStats.lastRenderMs", json!([]))
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
    b.goto(base).await?;
    b.wait_for(
        "the first page after a reload",
        "return window.edgefarmStats && window.edgefarmStats.firstJobsRenderMs !== null",
        Duration::from_secs(60),
    )
    .await?;
    let first_ms = b
        .exec("return window.edgefarmStats.firstJobsRenderMs", json!([]))
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
    let limit_s = 60_000.0;
    if thousand_ms.is_nan() || thousand_ms >= limit_s {
        return Err(format!("1,000 jobs took {thousand_ms} ms to show"));
    }
    Ok(format!(
        "dashboard page weight: {} bytes (one file: HTML + CSS + JS)\n\
         submitted 1,000 jobs / 100,000 tasks in {submit_s:.1} s\n\
         time to render 1,000 jobs (page size 1000, from the change to 1,000 rows): {thousand_ms:.0} ms\n\
         of which building the 1,000 rows in the browser: {dom_ms:.0} ms (the rest: two API pages of 500)\n\
         time to first jobs render after load (page size 50, 1,003 jobs in the farm): {first_ms:.0} ms\n\
         (debug build of edgefarm serve, memory store)",
        page.len()
    ))
}
