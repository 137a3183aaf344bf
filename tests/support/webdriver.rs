//! Just enough of the W3C WebDriver protocol to drive headless Chromium through chromedriver:
//! open a session, navigate, find and click elements, type, run scripts, take screenshots.
//!
//! Written over the `reqwest` client the tests already use, rather than the `fantoccini` crate:
//! the dashboard test needs eight commands, and a second HTTP stack with its own TLS features is
//! a lot to build on a two-core CI machine for that.

use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
}

type Res<T> = Result<T, String>;

impl Browser {
    /// Opens headless Chromium (`binary`) through the chromedriver at `driver`.
    pub async fn start(driver: &str, binary: &str, profile: &std::path::Path) -> Res<Browser> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1600,1000",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args}}}});
        let http = reqwest::Client::new();
        let r: Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await
            .map_err(|e| format!("chromedriver: {e}"))?
            .json()
            .await
            .map_err(|e| format!("chromedriver: {e}"))?;
        let session = r["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {r}"))?;
        let b = Browser {
            http,
            session: format!("{driver}/session/{session}"),
        };
        b.cmd(
            "POST",
            "/timeouts",
            json!({"script": 180_000, "implicit": 0}),
        )
        .await?;
        Ok(b)
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Res<Value> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !ok {
            return Err(format!("{path}: {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    /// Loads `url`.
    pub async fn goto(&self, url: &str) -> Res<()> {
        self.cmd("POST", "/url", json!({ "url": url }))
            .await
            .map(|_| ())
    }

    /// The first element `css` selects.
    pub async fn find(&self, css: &str) -> Res<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no element {css}"))
    }

    /// Clicks the first element `css` selects, as a user would.
    pub async fn click(&self, css: &str) -> Res<()> {
        let id = self.find(css).await?;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await
            .map(|_| ())
    }

    /// Types `text` into the first element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) -> Res<()> {
        let id = self.find(css).await?;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn exec(&self, script: &str, args: Value) -> Res<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](value)` when done.
    pub async fn exec_async(&self, script: &str, args: Value) -> Res<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Polls `script` (returning a boolean) until it is true or `timeout` passes.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Res<()> {
        let start = Instant::now();
        loop {
            if self.exec(script, json!([])).await? == json!(true) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the size of the page's viewport (the window is made larger by whatever its frame
    /// takes, measured once the first size is set).
    pub async fn resize(&self, width: u32, height: u32) -> Res<()> {
        let rect = |w: i64, h: i64| json!({"width": w, "height": h});
        let (w, h) = (i64::from(width), i64::from(height));
        self.cmd("POST", "/window/rect", rect(w, h)).await?;
        let inner = self
            .exec("return [window.innerWidth, window.innerHeight]", json!([]))
            .await?;
        let dim = |i: usize| inner[i].as_i64().unwrap_or(0);
        let (dw, dh) = ((w - dim(0)).max(0), (h - dim(1)).max(0));
        if dw > 0 || dh > 0 {
            self.cmd("POST", "/window/rect", rect(w + dw, h + dh))
                .await?;
        }
        Ok(())
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) -> Res<()> {
        let v = self.cmd("GET", "/screenshot", Value::Null).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, command: &str, params: Value) -> Res<Value> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": command, "params": params}),
        )
        .await
    }

    /// Ends the session (closes the browser).
    pub async fn quit(&self) {
        let _ = self.cmd("DELETE", "", Value::Null).await;
    }
}
