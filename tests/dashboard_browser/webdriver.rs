//! A tiny W3C WebDriver client for the dashboard's browser test: HTTP/1.1 over a std
//! `TcpStream` to a `chromedriver` child process on a loopback port, speaking the JSON
//! protocol (new session, navigate, find elements, text, execute script, window size,
//! screenshot, delete session). Also the plain JSON HTTP call the test uses against muster.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{free_port, wait_for, Proc};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP/1.1 request with an optional JSON body and bearer token: the status and the
/// body as JSON (`Value::Null` when empty, a JSON string when not JSON). Panics on I/O errors.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    request(addr, method, path, body, token).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`http`], with I/O errors returned.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read the head, then as much body as Content-Length says (chromedriver keeps the
    // connection open whatever the request asks), else to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP response head");
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 || raw.len() > 1 << 20 {
            return Err(bad());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => {
            while payload.len() < length {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short body"));
                }
                payload.extend_from_slice(&buf[..n]);
            }
            payload.truncate(length);
        }
        None => {
            stream.read_to_end(&mut payload)?;
        }
    }
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let text = String::from_utf8_lossy(&payload).into_owned();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, value))
}

/// The body of a chunked transfer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else { break };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let Some(chunk) = raw.get(start..start + size) else { break };
        out.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// A chromedriver child and one headless Chromium session; dropping it deletes the session
/// (closing Chromium) and then kills exactly that chromedriver.
pub struct Browser {
    addr: SocketAddr,
    session: String,
    // Dropped after `Drop::drop` ran: kills the chromedriver child.
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session with a window of
    /// `width`×`height`. Panics with the reason when Chromium cannot start.
    pub fn start(width: u32, height: u32, log_dir: &std::path::Path) -> Browser {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = log_dir.join("chromedriver.log");
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_dir.join("driver-verbose.log").display()));
        let driver = Proc::spawn(&mut cmd, log);
        wait_for(Duration::from_secs(20), "chromedriver to answer /status", || {
            let (_, status) = request(addr, "GET", "/status", None, None).ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-gpu".to_string(),
            "--no-first-run".to_string(),
            "--hide-scrollbars".to_string(),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, answer) = http(addr, "POST", "/session", Some(&caps), None);
        let session = answer["value"]["sessionId"].as_str().map(String::from).unwrap_or_else(|| {
            panic!("chromedriver could not start Chromium ({status}): {answer}\n{}", driver.log_text())
        });
        let browser = Browser { addr, session, _driver: driver };
        browser.resize(width, height);
        browser
    }

    /// A command on this session: `POST`/`GET`/`DELETE /session/{id}{path}`; its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("/session/{}{path}", self.session);
        let (status, answer) = http(self.addr, method, &url, body.as_ref(), None);
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    pub fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Sets the window so that the page's viewport is `width`×`height` CSS pixels: sets the
    /// window, measures what its frame takes (the window's rect less the viewport; a headless
    /// window reports an `outerWidth` of at least 500 whatever its rect), and sets it again
    /// with that added.
    pub fn resize(&self, width: u32, height: u32) {
        let rect = self.cmd("POST", "/window/rect", Some(json!({ "width": width, "height": height })));
        let inner = self.script("return [window.innerWidth, window.innerHeight];", json!([]));
        let frame = |axis: &str, i: usize| {
            rect[axis].as_u64().unwrap_or(0).saturating_sub(inner[i].as_u64().unwrap_or(0))
        };
        let (dw, dh) = (frame("width", 0), frame("height", 1));
        if dw > 0 || dh > 0 {
            let (w, h) = (u64::from(width) + dw, u64::from(height) + dh);
            self.cmd("POST", "/window/rect", Some(json!({ "width": w, "height": h })));
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its result.
    pub fn script(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// The references of the elements matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.cmd("POST", "/elements", Some(json!({ "using": "css selector", "value": css })));
        found.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_string()).collect()
    }

    /// The one element matching `css`, if there is one.
    pub fn find(&self, css: &str) -> Option<String> {
        self.find_all(css).into_iter().next()
    }

    /// An element's rendered text.
    pub fn text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or_default().to_string()
    }

    /// The rendered text (`innerText`) of every element matching `css`, read in one script
    /// call: the page redraws its tables, so a reference found first may be stale by the time
    /// its text is asked for.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);";
        serde_json::from_value(self.script(script, json!([css]))).unwrap()
    }

    pub fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.cmd("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    /// The script errors (uncaught exceptions, syntax and module errors) the page logged to
    /// the console since the last call.
    pub fn script_errors(&self) -> Vec<String> {
        let entries = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })));
        let messages = entries.as_array().cloned().unwrap_or_default().into_iter();
        let messages = messages.filter_map(|e| e["message"].as_str().map(String::from));
        messages.filter(|m| m.contains("Uncaught") || m.contains("SyntaxError")).collect()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("/session/{}", self.session);
        // Never panics: this may run while a failed test unwinds.
        let _ = request(self.addr, "DELETE", &url, None, None);
    }
}
