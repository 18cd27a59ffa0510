//! A small W3C WebDriver client for driving the real app through `tauri-driver`, and the
//! harness that starts the driver with the app under a scratch data folder.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// `tauri-driver`, stopped with SIGTERM (not SIGKILL, which would orphan WebKitWebDriver).
pub struct Driver {
    child: Child,
    pub port: u16,
}

impl Driver {
    pub fn start(port: u16) -> Result<Self> {
        let exe = std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into());
        let child = Command::new(exe)
            .args(["--port", &port.to_string()])
            .spawn()
            .map_err(|e| format!("cannot start tauri-driver (cargo install tauri-driver --version '^2'): {e}"))?;
        let d = Self { child, port };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if ureq::get(&format!("http://127.0.0.1:{port}/status")).call().is_ok() {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("tauri-driver did not answer".into())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

/// A WebDriver session on the app's window.
pub struct Session {
    base: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(600));
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => r
            .into_json::<Value>()
            .map(|v| v["value"].clone())
            .map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "{method} {url}: HTTP {code}: {}",
            r.into_string().unwrap_or_default()
        )),
        Err(e) => Err(format!("{method} {url}: {e}")),
    }
}

impl Session {
    pub fn new(driver: &Driver, app: &Path) -> Result<Self> {
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "wry", "tauri:options": { "application": app } } } });
        let v = call("POST", &format!("http://127.0.0.1:{}/session", driver.port), Some(caps))?;
        let id = v["sessionId"].as_str().ok_or("no session id")?;
        Ok(Self {
            base: format!("http://127.0.0.1:{}/session/{id}", driver.port),
        })
    }

    fn find_now(&self, css: &str) -> Result<Option<String>> {
        let v = call(
            "POST",
            &format!("{}/elements", self.base),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        Ok(v.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_string))
    }

    /// The element matching `css`, waiting up to `secs`.
    pub fn wait(&self, css: &str, secs: u64) -> Result<String> {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.find_now(css)? {
                return Ok(e);
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                return Err(format!("no element `{css}` after {secs} s"));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn exists(&self, css: &str) -> Result<bool> {
        Ok(self.find_now(css)?.is_some())
    }

    /// Waits until `pred` holds, polling.
    pub fn until(&self, what: &str, secs: u64, mut pred: impl FnMut() -> Result<bool>) -> Result<()> {
        let t0 = Instant::now();
        while !pred()? {
            if t0.elapsed() > Duration::from_secs(secs) {
                return Err(format!("timed out after {secs} s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Clicks like a user; an element still animating in (not yet interactable) is retried.
    pub fn click(&self, css: &str) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let e = self.wait(css, 30)?;
            match call("POST", &format!("{}/element/{e}/click", self.base), Some(json!({}))) {
                Ok(_) => return Ok(()),
                Err(err)
                    if (err.contains("not interactable") || err.contains("stale"))
                        && t0.elapsed() < Duration::from_secs(5) =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                // WebKitWebDriver does not click SVG shapes (the graph's nodes): send the same
                // DOM click event the user's click would.
                Err(err) if err.contains("not interactable") => {
                    self.run_js_args(
                        "document.querySelector(arguments[0]).dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true, view: window }));",
                        json!([css]),
                    )?;
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A key pressed on the element (focused first), as the DOM event a user's key press sends:
    /// WebKitWebDriver types only into form fields, not into an SVG map. `key` is a
    /// `KeyboardEvent.key` value (`ArrowLeft`, `Enter`, …).
    pub fn press(&self, css: &str, key: &str) -> Result<()> {
        self.wait(css, 30)?;
        self.run_js_args(
            "const e = document.querySelector(arguments[0]); e.focus(); \
             e.dispatchEvent(new KeyboardEvent('keydown', { key: arguments[1], bubbles: true, cancelable: true }));",
            json!([css, key]),
        )?;
        Ok(())
    }

    /// Whether the element's `class` attribute lists `class`.
    pub fn has_class(&self, css: &str, class: &str) -> Result<bool> {
        let v = self.run_js_args(
            "const e = document.querySelector(arguments[0]); return !!e && e.classList.contains(arguments[1]);",
            json!([css, class]),
        )?;
        Ok(v.as_bool().unwrap_or(false))
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let e = self.wait(css, 30)?;
        call("POST", &format!("{}/element/{e}/clear", self.base), Some(json!({})))?;
        call(
            "POST",
            &format!("{}/element/{e}/value", self.base),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// The element's rendered text (`textContent`, whitespace collapsed).
    pub fn text(&self, css: &str) -> Result<String> {
        self.wait(css, 30)?;
        let v = call(
            "POST",
            &format!("{}/execute/sync", self.base),
            Some(
                json!({ "script": "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", "args": [css] }),
            ),
        )?;
        Ok(v.as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    }

    pub fn enabled(&self, css: &str) -> Result<bool> {
        let e = self.wait(css, 30)?;
        Ok(call("GET", &format!("{}/element/{e}/enabled", self.base), None)?
            .as_bool()
            .unwrap_or(false))
    }

    /// Moves the mouse over an element, as a user pointing at it (shows what appears on hover).
    pub fn hover(&self, css: &str) -> Result<()> {
        let e = self.wait(css, 30)?;
        let origin = json!({ "element-6066-11e4-a52e-4f735466cecf": e });
        let pointer = json!({
            "type": "pointer",
            "id": "mouse",
            "parameters": { "pointerType": "mouse" },
            "actions": [{ "type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0 }],
        });
        call(
            "POST",
            &format!("{}/actions", self.base),
            Some(json!({ "actions": [pointer] })),
        )?;
        Ok(())
    }

    /// Resizes the window (the screenshots are taken at the sizes people use: 1280×800, 1024×700).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        call(
            "POST",
            &format!("{}/window/rect", self.base),
            Some(json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }

    pub fn run_js_args(&self, script: &str, args: Value) -> Result<Value> {
        call(
            "POST",
            &format!("{}/execute/sync", self.base),
            Some(json!({ "script": script, "args": args })),
        )
    }

    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = call("GET", &format!("{}/screenshot", self.base), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("no screenshot")?)
            .map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Sends `text` from the composer and waits until the reply, the chat's message number
    /// `reply`, has finished streaming; returns its text.
    pub fn chat(&self, text: &str, reply: usize) -> Result<String> {
        let reply = tid(&format!("message-{reply}"));
        self.type_into(&tid("composer-input"), text)?;
        self.click(&tid("composer-send"))?;
        self.wait(&reply, 120)?;
        self.until("the reply to finish", 300, || {
            Ok(!self.exists(&tid("message-streaming"))? && !self.exists(&tid("message-pending"))?)
        })?;
        self.text(&reply)
    }

    /// Freezes the live state from the Freeze dialog under `name`, as `kind` (the suffix of a
    /// `freeze-kind-*` test id) or the dialog's default.
    pub fn freeze_as(&self, name: &str, kind: Option<&str>) -> Result<()> {
        self.click(&tid("freeze-open"))?;
        self.type_into(&tid("freeze-name"), name)?;
        if let Some(kind) = kind {
            self.click(&tid(&format!("freeze-kind-{kind}")))?;
        }
        self.click(&tid("freeze-submit"))
    }

    pub fn close(&self) {
        let _ = call("DELETE", &self.base, None);
    }
}

/// The CSS selector of the element with this `data-testid`.
pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// A path the script running the test sets in the environment (`what` says which and who).
pub fn env_path(name: &str, what: &str) -> PathBuf {
    std::env::var(name)
        .map(PathBuf::from)
        .unwrap_or_else(|_| panic!("{name}: {what}"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}
