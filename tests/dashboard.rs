//! The dashboard in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
//! installed by scripts/test) against `edgefarm serve`, with a simple node loop rendering tasks.
//! It checks that the page shows a job reaching 100 %, that its cancel button cancels a job,
//! that the preview appears and that a finished frame's link downloads its bytes (also from a
//! bucket on another origin, through the farm's 307, when the bucket allows it); then it
//! measures the page with 1,000 jobs (100,000 tasks). The screenshots and the numbers are left
//! in `tests/output/` for CI to keep.

#[path = "support/mini_node.rs"]
mod mini_node;
#[path = "support/png.rs"]
mod png;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/webdriver.rs"]
mod webdriver;

use futures_util::StreamExt;
use mini_node::{node_loop, Api, SECRET};
use serde_json::json;
use serve::{free_port, Serve};
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
    let driver_port = free_port();
    let server = Serve::build()
        .memory()
        .secret(SECRET)
        .lease_ms(10_000)
        .heartbeat_ms(1000)
        .poll_ms(200)
        .env("EDGEFARM_LOG", "warn")
        .start()
        .await;
    let _driver = Reaped(
        Command::new(DRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let base = server.base.clone();
    let driver = format!("http://127.0.0.1:{driver_port}");
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
    outputs(b, &hero, out).await?;

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
    trouble(b, api, &hero, out).await?;

    let report = bulk(b, api, base).await?;
    b.screenshot(&out.join("dashboard-1000-jobs.png")).await?;
    println!("{report}");
    std::fs::write(out.join("dashboard-report.txt"), &report).map_err(|e| e.to_string())
}

/// The finished job's outputs (issue 18): the job's detail lists a download link per frame the
/// node uploaded; clicking one saves the frame's exact bytes to the browser's download folder.
async fn outputs(b: &Browser, hero: &str, out: &std::path::Path) -> Result<(), String> {
    let wait = Duration::from_secs(60);
    let downloads = out.join("dashboard-downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).map_err(|e| e.to_string())?;
    b.cdp(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.to_string_lossy()}),
    )
    .await?;
    b.click(&format!("{} .name", row(hero))).await?;
    b.wait_for(
        "a download link for each of the 24 frames",
        "return document.querySelectorAll('#outputs-list a.out').length === 24",
        wait,
    )
    .await?;
    let want = png::frame(7, 64, 36);
    let link = "#outputs-list a.out[download=\"f_0007.png\"]";
    let shown = b
        .exec(
            &format!("const a = document.querySelector('{link}'); return a ? [a.textContent, a.getAttribute('href')] : null"),
            json!([]),
        )
        .await?;
    let sha = mini_node::sha256_hex(&want);
    if shown != json!(["frames/f_0007.png", format!("/v1/blobs/{sha}")]) {
        return Err(format!(
            "frame 7's link should name its path and blob, got {shown}"
        ));
    }
    b.click(link).await?;
    let saved = downloads.join("f_0007.png");
    let started = Instant::now();
    loop {
        if std::fs::read(&saved).is_ok_and(|got| got == want) {
            break;
        }
        if started.elapsed() > wait {
            let listing: Vec<_> = std::fs::read_dir(&downloads)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            return Err(format!(
                "clicking frame 7's link should save its {} bytes as {}; the folder holds {listing:?}",
                want.len(),
                saved.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only whole, verified bytes reach the folder; nothing marked as failed.
    let bad = b
        .exec(
            "return document.querySelectorAll('#outputs-list a.out.bad').length",
            json!([]),
        )
        .await?;
    if bad != json!(0) {
        return Err(format!("{bad} output links report a failed download"));
    }
    Ok(())
}

/// What a farm in trouble looks like (issue 15): a job every node failed shows its error and
/// can be requeued, a job no node can take says why it waits, a node that left is offline, the
/// nodes panel says what each node renders, a task's whole log can be read, and the page fits
/// 1400×900, 1920×1080 and a 390×844 phone (screenshots of each in `tests/output/`).
async fn trouble(b: &Browser, api: &Api, hero: &str, out: &std::path::Path) -> Result<(), String> {
    let wait = Duration::from_secs(60);
    // render-02 serves only the "shots" queue, and fails what it gets.
    let (_, enrol) = api
        .call(
            "POST",
            "/v1/nodes",
            SECRET,
            Some(json!({"name": "render-02", "types": ["command"], "slots": 1})),
        )
        .await;
    let token = enrol["token"].as_str().unwrap_or("").to_string();
    api.call("POST", "/v1/queue/shots", &token, Some(json!({"max": 0})))
        .await;
    let broken = api.submit(json!({"name": "sh050 missing file", "type": "command", "queue": "shots", "frames": "1-4", "chunk_size": 4,
        "params": {"program": "touchframe", "args": ["{frame}"]}})).await;
    let (_, got) = api
        .call("POST", "/v1/queue/shots", &token, Some(json!({"max": 1})))
        .await;
    let task = got["tasks"][0].clone();
    let id = task["_id"].as_str().unwrap_or("").to_string();
    let mut log: String = (1..=60)
        .map(|i| format!("line {i:02}: Blender 4.2 reading shots/sh050.blend, attempt to open the file and its libraries\n"))
        .collect();
    log.push_str(
        "Error: cannot read file 'shots/sh050.blend': No such file or directory (END OF LOG)\n",
    );
    api.call(
        "POST",
        &format!("/v1/tasks/{id}/heartbeat"),
        &token,
        Some(json!({"lease": task["lease"], "log": log})),
    )
    .await;
    let (status, acked) = api
        .call("POST", &format!("/v1/tasks/{id}/ack"), &token, Some(json!({"lease": task["lease"], "status": "failed", "error": "exit code 1: cannot read file 'shots/sh050.blend'"})))
        .await;
    if status != 200 || acked["state"] != "failed" {
        return Err(format!(
            "the only node that can run it failed it: the task should fail, got {status} {acked}"
        ));
    }
    let waiting = api.submit(json!({"name": "sh060 lighting – gpu only", "type": "blender", "queue": "lighting", "tags": ["gpu"], "frames": "1-10",
        "params": {"file": "shots/sh060.blend", "output": "sh060/f_####"}})).await;
    let (_, gone) = api
        .call(
            "POST",
            "/v1/nodes",
            SECRET,
            Some(json!({"name": "render-03", "slots": 4})),
        )
        .await;
    let gone_id = gone["node"]["id"].as_str().unwrap_or("").to_string();
    api.call("POST", &format!("/v1/nodes/{gone_id}/leave"), SECRET, None)
        .await;

    let note = |job: &str| {
        format!(
            "const n = document.querySelector('{} .note'); return n ? n.textContent : ''",
            row(job)
        )
    };
    b.wait_for("the failed job's error in its row", &format!("const n = document.querySelector('{} .note'); return !!n && n.textContent.includes(\"cannot read file\")", row(&broken)), wait).await?;
    b.wait_for("the waiting job's reason in its row", &format!("const n = document.querySelector('{} .note'); return !!n && n.textContent.includes('no node with type blender and tag gpu on queue lighting')", row(&waiting)), wait).await?;
    let requeue = b
        .exec(
            &format!(
                "return document.querySelector('{} button[data-act=\"requeue\"]').disabled",
                row(&broken)
            ),
            json!([]),
        )
        .await?;
    if requeue != json!(false) {
        return Err(format!(
            "Requeue should be enabled for the failed job ({:?})",
            b.exec(&note(&broken), json!([])).await?
        ));
    }
    b.wait_for("the node that left shown offline", &format!("const n = document.querySelector('.node[data-node=\"{gone_id}\"] .badge'); return !!n && n.textContent === 'offline'"), wait).await?;

    // The full log of the failed task: select its job, click its task.
    b.click(&format!("{} .name", row(&broken))).await?;
    b.wait_for(
        "its frame strip",
        "return document.querySelectorAll('#strip i.failed').length === 1",
        wait,
    )
    .await?;
    b.click("#strip i.failed").await?;
    b.wait_for("the whole log, to its last line", "const l = document.querySelector('#log'); return !!l && l.textContent.includes('(END OF LOG)') && l.textContent.includes('line 01')", wait).await?;
    let err = b
        .exec(
            "return document.querySelector('#task-error').textContent",
            json!([]),
        )
        .await?;
    if !err
        .as_str()
        .unwrap_or("")
        .contains("failed on every node that can run it (render-02)")
    {
        return Err(format!("the task view shows its whole error, got {err}"));
    }

    // A job that renders now, to show in the nodes panel.
    let long = api.submit(json!({"name": "sh070 long shot", "type": "command", "frames": "1-400", "chunk_size": 20, "priority": 99,
        "params": {"program": "touchframe", "args": ["{frame}"]}})).await;
    b.wait_for("what render-01 renders", "const r = [...document.querySelectorAll('.node .renders')].map((e) => e.textContent).join(' '); return r.includes('sh070 long shot')", wait).await?;

    // 1400×900: every action of every row fits; "done in" stays on one line.
    b.resize(1400, 900).await?;
    // The sticky header must not cover the row clicked (the log view scrolled the page).
    b.exec("window.scrollTo(0, 0)", json!([])).await?;
    b.click(&format!("{} .name", row(&long))).await?;
    b.wait_for(
        "the layout at 1400 px",
        "return window.innerWidth <= 1400",
        wait,
    )
    .await?;
    let fit = b.exec(&format!("const acts = document.querySelector('{} .acts'); const sec = acts.closest('section').getBoundingClientRect(); \
        const parts = [...acts.children].filter((e) => e.offsetParent !== null).map((e) => e.getBoundingClientRect()); \
        const eta = document.querySelector('{} .eta'); \
        return {{right: Math.max(...parts.map((r) => r.right)), sec: sec.right, width: window.innerWidth, n: parts.length, eta: eta.textContent, etaH: eta.getBoundingClientRect().height, line: parseFloat(getComputedStyle(eta).lineHeight) || 17}}", row(&broken), row(hero)), json!([])).await?;
    let f = |k: &str| fit[k].as_f64().unwrap_or(f64::NAN);
    if !(f("right") <= f("sec") && f("right") <= f("width") && f("n") >= 4.0) {
        return Err(format!(
            "at 1400 px the Actions column (Requeue, priority) should fit: {fit}"
        ));
    }
    if !(fit["eta"].as_str().unwrap_or("").starts_with("done in") && f("etaH") < 1.6 * f("line")) {
        return Err(format!("\"done in\" should stay on one line: {fit}"));
    }
    b.screenshot(&out.join("dashboard-1400x900.png")).await?;
    b.resize(1920, 1080).await?;
    b.wait_for(
        "the layout at 1920 px",
        "return window.innerWidth > 1400",
        wait,
    )
    .await?;
    // With the failed task's log open.
    b.exec("window.scrollTo(0, 0)", json!([])).await?;
    b.click(&format!("{} .name", row(&broken))).await?;
    b.wait_for(
        "its frame strip",
        "return document.querySelectorAll('#strip i.failed').length === 1",
        wait,
    )
    .await?;
    b.click("#strip i.failed").await?;
    b.wait_for("its log", "const l = document.querySelector('#log'); return !!l && l.textContent.includes('(END OF LOG)')", wait).await?;
    b.screenshot(&out.join("dashboard-1920x1080.png")).await?;

    // A phone: nothing wider than the screen.
    b.exec("window.scrollTo(0, 0)", json!([])).await?;
    b.click(&format!("{} .name", row(&long))).await?;
    b.resize(390, 844).await?;
    b.wait_for(
        "the layout at 390 px",
        "return window.innerWidth <= 400",
        wait,
    )
    .await?;
    let over = b.exec("const w = document.documentElement.clientWidth; \
        const wide = [...document.querySelectorAll('header, main, section, tr.job, .acts')].filter((e) => e.getBoundingClientRect().right > w + 1).map((e) => e.tagName + '.' + e.className); \
        return {scroll: document.documentElement.scrollWidth, width: w, wide}", json!([])).await?;
    if over["scroll"].as_f64() > over["width"].as_f64()
        || over["wide"].as_array().is_some_and(|w| !w.is_empty())
    {
        return Err(format!(
            "on a 390 px phone nothing should overflow the screen: {over}"
        ));
    }
    b.exec("window.scrollTo(0, 0)", json!([])).await?;
    b.screenshot(&out.join("dashboard-390x844.png")).await?;
    b.resize(1600, 1000).await?;
    api.call("POST", &format!("/v1/jobs/{long}/cancel"), SECRET, None)
        .await;
    Ok(())
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

/// Personal tokens in the page (issue 21): a viewer finds every job and node action disabled;
/// a submitter may cancel its own job, listed first, and not another submitter's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_offers_each_role_only_its_own_actions() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
        if std::env::var("EDGEFARM_SKIP_BROWSER").is_ok() {
            eprintln!("EDGEFARM_SKIP_BROWSER set and no chromium: the browser test did not run");
            return;
        }
        panic!("the dashboard test needs Chromium: apt-get install chromium chromium-driver (scripts/test does)");
    }
    let driver_port = free_port();
    let server = Serve::build()
        .memory()
        .secret(SECRET)
        .poll_ms(200)
        .env("EDGEFARM_LOG", "warn")
        .start()
        .await;
    let _driver = Reaped(
        Command::new(DRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let driver = format!("http://127.0.0.1:{driver_port}");
    wait_http(&format!("{driver}/status")).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let profile = tempfile::tempdir().expect("profile dir");
    let b = Browser::start(&driver, CHROMIUM, profile.path())
        .await
        .expect("a browser session");
    let result = roles_tour(&b, &api, &server.base).await;
    if result.is_err() {
        let _ = b
            .screenshot(&output_dir().join("dashboard-roles-failure.png"))
            .await;
    }
    b.quit().await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn roles_tour(b: &Browser, api: &Api, base: &str) -> Result<(), String> {
    let wait = Duration::from_secs(30);
    let token = |name: &'static str, role: &'static str| async move {
        let (s, t) = api
            .call(
                "POST",
                "/v1/tokens",
                SECRET,
                Some(json!({"name": name, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "{t}");
        t["token"].as_str().unwrap_or_default().to_string()
    };
    let viewer = token("wall", "viewer").await;
    let anna = token("anna", "submitter").await;
    let bob = token("bob", "submitter").await;
    let spec = |name: &str| json!({"name": name, "type": "command", "queue": "held", "params": {"program": "touchframe"}});
    let submit = |t: String, name: &'static str| async move {
        let (s, j) = api.call("POST", "/v1/jobs", &t, Some(spec(name))).await;
        assert_eq!(s, 202, "{j}");
        j["id"].as_str().unwrap_or_default().to_string()
    };
    let mine = submit(anna.clone(), "anna's shot").await;
    let theirs = submit(bob.clone(), "bob's shot").await;
    let (s, _) = api
        .call("POST", "/v1/nodes", SECRET, Some(json!({"name": "rack"})))
        .await;
    assert_eq!(s, 201);

    let login = |t: String, who: &'static str| async move {
        b.goto(base).await?;
        b.exec("localStorage.clear(); return true", json!([]))
            .await?;
        b.goto(base).await?;
        b.type_into("#secret", &t).await?;
        b.click("#connect").await?;
        b.wait_for(
            &format!("the page to know it is {who}"),
            &format!("return document.querySelector('#whoami').textContent.includes('{who}')"),
            wait,
        )
        .await
    };
    login(viewer, "viewer").await?;
    let both = format!("return !!document.querySelector('{}') && !!document.querySelector('{}') && !!document.querySelector('#nodes button')", row(&mine), row(&theirs));
    b.wait_for("both jobs and the node", &both, wait).await?;
    let enabled = b
        .exec(
            "return [...document.querySelectorAll('tr.job button, tr.job input, #nodes button')].filter(x => !x.disabled).map(x => x.outerHTML)",
            json!([]),
        )
        .await?;
    if enabled.as_array().is_none_or(|a| !a.is_empty()) {
        return Err(format!("a viewer should find no action enabled: {enabled}"));
    }

    login(anna, "anna").await?;
    b.wait_for("both jobs", &both, wait).await?;
    let state = b
        .exec(
            "const q = (s) => document.querySelector(s); \
             return [q(arguments[0]).disabled, q(arguments[1]).disabled, q('#nodes button').disabled, \
                     document.querySelector('tr.job').dataset.job]",
            json!([
                format!("{} button[data-act=\"cancel\"]", row(&mine)),
                format!("{} button[data-act=\"cancel\"]", row(&theirs))
            ]),
        )
        .await?;
    if state != json!([false, true, true, mine]) {
        return Err(format!(
            "anna's cancel enabled on her job only, drain disabled, her job first: {state}"
        ));
    }
    let cancel = format!("{} button[data-act=\"cancel\"]", row(&mine));
    b.click(&cancel).await?;
    b.click(&cancel).await?;
    b.wait_for(
        "her job to show canceled",
        &format!(
            "const r = document.querySelector('{} .state'); return !!r && r.textContent === 'canceled'",
            row(&mine)
        ),
        wait,
    )
    .await?;
    let (_, other) = api
        .call("GET", &format!("/v1/jobs/{theirs}"), SECRET, None)
        .await;
    if other["state"] != "queued" {
        return Err(format!("bob's job is untouched: {other}"));
    }
    Ok(())
}

/// A stand-in bucket for the browser: answers every `GET` with `body` and a preflight with
/// 204, adding `Access-Control-Allow-Origin` (the dashboard's origin) only while `cors` is on,
/// as a bucket with and without the CORS rule of docs/ASSETS.md would. It records the head of
/// every request. (It checks no signature: tests/s3.rs does that with a real S3 server; here
/// what is tested is what the browser does.)
async fn cors_bucket(
    body: Vec<u8>,
    cors: Arc<AtomicBool>,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (log, body, cors) = (log.clone(), body.clone(), cors.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                let origin = head
                    .lines()
                    .find_map(|l| l.strip_prefix("origin:"))
                    .map(|o| o.trim().to_string());
                let get = head.starts_with("get ");
                log.lock().expect("log").push(head);
                let allow = match origin.filter(|_| cors.load(Ordering::Relaxed)) {
                    Some(o) => format!(
                        "access-control-allow-origin: {o}\r\naccess-control-allow-methods: GET, HEAD\r\naccess-control-allow-headers: *\r\naccess-control-expose-headers: Content-Length\r\nvary: Origin\r\n"
                    ),
                    None => String::new(),
                };
                let (status, answer) = if get {
                    ("200 OK", body.clone())
                } else {
                    ("204 No Content", Vec::new())
                };
                let mut out = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: image/png\r\ncontent-length: {}\r\n{allow}connection: close\r\n\r\n",
                    answer.len()
                )
                .into_bytes();
                out.extend_from_slice(&answer);
                let _ = conn.write_all(&out).await;
            });
        }
    });
    (url, seen)
}

/// With blobs in a bucket, a frame link's fetch follows the farm's 307 to the bucket's origin:
/// the page's CSP lets it (`connect-src` names the bucket), the browser sends the farm's secret
/// only to the farm, and the download works exactly when the bucket has the CORS rule
/// (docs/ASSETS.md): without it the link is marked failed and nothing is saved.
#[tokio::test]
async fn a_frame_link_downloads_from_a_bucket_with_the_cors_rule() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
        if std::env::var("EDGEFARM_SKIP_BROWSER").is_ok() {
            eprintln!("EDGEFARM_SKIP_BROWSER set and no chromium: the browser test did not run");
            return;
        }
        panic!("the dashboard test needs Chromium: apt-get install chromium chromium-driver (scripts/test does)");
    }
    let frame = png::frame(3, 64, 36);
    let sha = mini_node::sha256_hex(&frame);
    let cors = Arc::new(AtomicBool::new(false));
    let (bucket, seen) = cors_bucket(frame.clone(), cors.clone()).await;
    let server = Serve::build()
        .memory()
        .secret(SECRET)
        .env("EDGEFARM_LOG", "warn")
        .env("EDGEFARM_S3_ENDPOINT", &bucket)
        .env("EDGEFARM_S3_BUCKET", "farm")
        .env("EDGEFARM_S3_ACCESS_KEY", "dashboard-ak")
        .env("EDGEFARM_S3_SECRET_KEY", "dashboard-sk")
        .start()
        .await;
    let base = server.base.clone();
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    // The frame is "in the bucket" (the stand-in serves it) and confirmed to the farm; a node
    // renders a one-frame job and acks it as the task's output.
    let (status, _) = api
        .call(
            "PUT",
            &format!("/v1/blobs/{sha}?size={}", frame.len()),
            SECRET,
            None,
        )
        .await;
    assert_eq!(status, 201, "the confirmation is recorded");
    let job = api
        .submit(
            json!({"name": "bucket frames", "type": "command", "frames": "3",
            "params": {"program": "touchframe", "args": ["{frame}"]}}),
        )
        .await;
    let (_, enrol) = api
        .call(
            "POST",
            "/v1/nodes",
            SECRET,
            Some(json!({"name": "render-b"})),
        )
        .await;
    let token = enrol["token"].as_str().expect("token").to_string();
    let (_, got) = api
        .call("POST", "/v1/queue/default", &token, Some(json!({"max": 1})))
        .await;
    let task = &got["tasks"][0];
    let id = task["_id"].as_str().expect("task id");
    let ack = json!({"lease": task["lease"], "status": "done", "result": {"exit_code": 0},
        "outputs": [{"path": "frames/f_0003.png", "sha256": sha, "size": frame.len()}]});
    let (status, acked) = api
        .call("POST", &format!("/v1/tasks/{id}/ack"), &token, Some(ack))
        .await;
    assert_eq!(status, 200, "ack: {acked}");

    let driver_port = free_port();
    let _driver = Reaped(
        Command::new(DRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let driver = format!("http://127.0.0.1:{driver_port}");
    wait_http(&format!("{driver}/status")).await;
    let out = output_dir();
    let profile = tempfile::tempdir().expect("profile dir");
    let b = Browser::start(&driver, CHROMIUM, profile.path())
        .await
        .expect("a browser session");
    let result = bucket_download(&b, &base, &job, &frame, &cors, &out).await;
    if result.is_err() {
        let _ = b
            .screenshot(&out.join("dashboard-bucket-failure.png"))
            .await;
    }
    b.quit().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.lock().expect("log").clone();
    let gets: Vec<_> = seen.iter().filter(|h| h.starts_with("get ")).collect();
    assert_eq!(
        gets.len(),
        2,
        "one GET per click reached the bucket: {seen:#?}"
    );
    for head in &seen {
        assert!(
            !head.contains("authorization") && !head.contains(SECRET),
            "the farm's secret stays with the farm: {head}"
        );
        assert!(
            head.contains(&format!("origin: {base}")),
            "the request names the dashboard's origin: {head}"
        );
        assert!(head.contains("x-amz-signature="), "a presigned URL: {head}");
    }
}

async fn bucket_download(
    b: &Browser,
    base: &str,
    job: &str,
    want: &[u8],
    cors: &AtomicBool,
    out: &std::path::Path,
) -> Result<(), String> {
    let wait = Duration::from_secs(60);
    let downloads = out.join("dashboard-bucket-downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).map_err(|e| e.to_string())?;
    b.goto(base).await?;
    b.cdp(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.to_string_lossy()}),
    )
    .await?;
    b.type_into("#secret", SECRET).await?;
    b.click("#connect").await?;
    b.wait_for(
        "the login to close",
        "return document.querySelector('#login').classList.contains('hide')",
        wait,
    )
    .await?;
    b.wait_for(
        "the job's row",
        &format!("return !!document.querySelector('{} .name')", row(job)),
        wait,
    )
    .await?;
    b.click(&format!("{} .name", row(job))).await?;
    let link = "#outputs-list a.out[download=\"f_0003.png\"]";
    b.wait_for(
        "the frame's link",
        &format!("return !!document.querySelector('{link}')"),
        wait,
    )
    .await?;
    // Without the CORS rule the browser refuses the bucket's answer: the link says it failed.
    b.click(link).await?;
    b.wait_for(
        "the link marked failed (no CORS rule on the bucket)",
        &format!("return document.querySelector('{link}').classList.contains('bad')"),
        wait,
    )
    .await?;
    // With it, the bytes arrive, pass the page's size and SHA-256 checks, and are saved.
    cors.store(true, Ordering::Relaxed);
    b.click(link).await?;
    let saved = downloads.join("f_0003.png");
    let started = Instant::now();
    while !std::fs::read(&saved).is_ok_and(|got| got == want) {
        if started.elapsed() > wait {
            return Err(format!(
                "with the CORS rule, clicking the link should save {} bytes as {}",
                want.len(),
                saved.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = b
        .exec(
            &format!("return document.querySelector('{link}').classList.contains('bad')"),
            json!([]),
        )
        .await?;
    if bad != json!(false) {
        return Err("the link still reports a failed download".into());
    }
    Ok(())
}
