//! `duraflow serve` run as a process, and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::DEADLINE;

/// A running `duraflow serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: Client<HttpConnector, Body>,
}

/// The credentials a request sends.
#[derive(Clone, Copy, Debug)]
pub enum Token<'a> {
    None,
    Bearer(&'a str),
}

impl Server {
    /// Starts `duraflow --db DB serve --listen 127.0.0.1:0 ARGS..` (with `env` set) and reads
    /// the address it listens on from its stderr.
    pub fn start(db: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_duraflow"));
        command
            .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("DURAFLOW_DATABASE_URL")
            .env_remove("DURAFLOW_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads stderr to its end (so the server never blocks on a full pipe), handing over
        // the address line.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[serve] {line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx.recv_timeout(DEADLINE).unwrap_or_else(|e| {
            panic!("duraflow serve printed no address within {DEADLINE:?}: {e}")
        });
        let mut server = Server::attach(&format!("http://{addr}"));
        server.child = Some(child);
        server
    }

    /// A client of the server at `base` (`http://HOST:PORT`), which it does not own.
    pub fn attach(base: &str) -> Server {
        Server {
            child: None,
            base: base.to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request; the status and the body as JSON (`Value::Null` when it is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Token<'_>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send_raw(method, path, token, content_type, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a request; the status, the content type and the body as it came.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Token<'_>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, String, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Token::Bearer(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = self
            .http
            .request(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
            .await
            .unwrap();
        (status, content_type, bytes.to_vec())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Token<'_>) -> (StatusCode, Value) {
        self.send(Method::GET, path, token, None, Body::empty())
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Token<'_>, json: &str) -> (StatusCode, Value) {
        let body = Body::from(json.to_owned());
        self.send(Method::POST, path, token, Some("application/json"), body)
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The stable code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Checks that a reply is an error of `status` with `code`; its body.
pub fn expect_error(reply: (StatusCode, Value), status: StatusCode, code_: &str) -> Value {
    let (got, body) = reply;
    assert_eq!((got, code(&body)), (status, code_), "{body}");
    body
}

/// The ids of a page of instances.
pub fn ids(page: &Value) -> Vec<&str> {
    page["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}
