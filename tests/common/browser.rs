//! Headless Chromium for the page tests, driven over the DevTools protocol: start it, open
//! its page target, evaluate, wait for the DOM to show something, size it, screenshot it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{required_env, unique, Ws};

/// Headless Chromium with a DevTools endpoint; killed on drop.
pub struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    devtools: String,
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with(&[]).await
    }

    /// [`Browser::start`] with more command-line switches.
    pub async fn start_with(extra: &[&str]) -> Browser {
        let bin = required_env(
            "IOC_TEST_CHROMIUM",
            "headless Chromium (Debian package chromium)",
        );
        let profile = std::env::temp_dir().join(unique("chromium-profile"));
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--window-size=1600,900",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        // Chromium writes the port it chose into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let mut port = None;
        for _ in 0..150 {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
            {
                port = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let port = port.expect("chromium did not open its DevTools port within 15 s");
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        Browser {
            child,
            profile,
            devtools: page["webSocketDebuggerUrl"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A DevTools session on the page target.
pub struct Page {
    ws: Ws,
    next_id: u64,
    /// Every address the browser asked for (requests and websockets) since
    /// [`Page::watch_network`], from the DevTools network events.
    network: Vec<String>,
}

impl Page {
    pub async fn open(b: &Browser) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(&b.devtools).await.unwrap();
        Page {
            ws,
            next_id: 0,
            network: Vec::new(),
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(Message::Text(
                json!({"id": id, "method": method, "params": params})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("devtools answer")
                .unwrap()
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
                match v["method"].as_str() {
                    Some("Network.requestWillBeSent") => {
                        if let Some(u) = v["params"]["request"]["url"].as_str() {
                            self.network.push(u.to_string());
                        }
                    }
                    Some("Network.webSocketCreated") => {
                        if let Some(u) = v["params"]["url"].as_str() {
                            self.network.push(u.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub async fn eval(&mut self, expr: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )
        .await["result"]["value"]
            .clone()
    }

    /// Polls `expr` until it equals `want` or `wait` passes; returns the last value.
    pub async fn wait_for(&mut self, expr: &str, want: &Value, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = self.eval(expr).await;
            if &v == want || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets the page's size (CSS pixels) as a device of that screen would have it.
    pub async fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    /// From the next navigation on, counts what the page's Content-Security-Policy refuses
    /// (read with [`Page::csp_violations`]).
    pub async fn watch_csp(&mut self) {
        self.call("Page.enable", json!({})).await;
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.cspViolations = []; document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await;
    }

    /// What the Content-Security-Policy refused since the page loaded (see
    /// [`Page::watch_csp`]); `None` when nothing was watching.
    pub async fn csp_violations(&mut self) -> Option<Vec<String>> {
        let v = self.eval("JSON.stringify(window.cspViolations)").await;
        serde_json::from_str(v.as_str()?).ok()
    }

    /// From the next navigation on, records the address of every websocket the page opens
    /// (read with [`Page::websocket_urls`]).
    pub async fn watch_websockets(&mut self) {
        self.call("Page.enable", json!({})).await;
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.wsUrls = []; const W = window.WebSocket; \
                window.WebSocket = function (u, p) { window.wsUrls.push(String(u)); return p === undefined ? new W(u) : new W(u, p); }; \
                window.WebSocket.prototype = W.prototype; Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });"}),
        )
        .await;
    }

    /// The websockets the page opened since it loaded (see [`Page::watch_websockets`]).
    pub async fn websocket_urls(&mut self) -> Vec<String> {
        let v = self.eval("JSON.stringify(window.wsUrls || [])").await;
        serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default()
    }

    /// Asserts that nothing was refused by the Content-Security-Policy and that every
    /// websocket the page opened carried no token: a single-use ticket (a pasted token's
    /// page) or nothing at all (a signed-in page, on its session cookie), never `token`
    /// (needs [`Page::watch_csp`] and [`Page::watch_websockets`] before the navigation).
    pub async fn assert_policy_kept(&mut self, token: &str) {
        assert_eq!(
            self.csp_violations().await,
            Some(vec![]),
            "nothing refused by the Content-Security-Policy"
        );
        let sockets = self.websocket_urls().await;
        assert!(!sockets.is_empty(), "the page opened its websocket");
        for url in &sockets {
            assert!(url.contains("/ws?ticket=") || url.ends_with("/ws"), "{url}");
            assert!(
                !url.contains(token) && !url.contains("access_token"),
                "no token in {url}"
            );
        }
    }

    /// From now on, records every address the browser asks for (see [`Page::network_log`]).
    pub async fn watch_network(&mut self) {
        self.call("Network.enable", json!({})).await;
    }

    /// The addresses asked for since [`Page::watch_network`] (requests, redirects followed,
    /// websockets), in order.
    pub async fn network_log(&mut self) -> Vec<String> {
        // Events that came after the last answer are read with this one.
        self.eval("1").await;
        self.network.clone()
    }

    /// Navigates to `url` (without waiting for it to load).
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Saves a PNG of what the page shows, for a person to look at.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = shot["data"].as_str().expect("a screenshot");
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        std::fs::write(path, png).expect("writing the screenshot");
    }
}
