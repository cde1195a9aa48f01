//! The dashboard in a real browser: Debian's `chromium`, driven through `chromedriver` by
//! `fantoccini`, against `duraflow serve` (a process) on a SQLite file that an engine in this
//! test fills with runs. It enters the token, loads the list, opens an instance, checks its
//! timeline, cancels it through the page and checks the store.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`;
//! `scripts/test` installs them). Without them the test fails, saying so: it never passes
//! silently. `CHROMEDRIVER` and `CHROMIUM` name other binaries.
//!
//! Screenshots are saved under `target/artifacts/dashboard/` of the workspace (or the
//! directory `DURAFLOW_ARTIFACTS` names): `list.png`, `instance.png`, `failed.png`,
//! `cancelled.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::server::Server;
use common::DEADLINE;
use duraflow::prelude::*;
use duraflow::EngineOptions;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

const TOKEN: &str = "dashboard-token";

async fn charge(_ctx: ActivityContext, order: u64) -> Result<u64, ActivityError> {
    if order == 13 {
        return Err(ActivityError::retryable("card declined"));
    }
    Ok(order * 100)
}

async fn reserve(ctx: ActivityContext, order: u64) -> Result<u64, ActivityError> {
    if ctx.attempt() < 3 {
        return Err(ActivityError::retryable("warehouse busy"));
    }
    Ok(order)
}

async fn notify(_ctx: WorkflowContext, order: u64) -> Result<u64, WorkflowError> {
    Ok(order)
}

async fn fulfil(ctx: WorkflowContext, order: u64) -> Result<String, WorkflowError> {
    let retry = RetryPolicy::fixed(Duration::from_millis(10)).max_attempts(3);
    let _: u64 = ctx.activity("charge", &order).retry(retry.clone()).await?;
    let _: u64 = ctx.activity("reserve", &order).retry(retry).await?;
    ctx.sleep(Duration::from_millis(20)).await?;
    let _: u64 = ctx
        .child_workflow("notify", &order)
        .id(format!("notify-{order}"))
        .await?;
    let approval: String = ctx.wait_for_event("approved").await?;
    Ok(format!("shipped {order} ({approval})"))
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary `env` names, else the first of `candidates` that exists.
fn binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// `chromedriver` on a free port, and a browser session on it.
async fn browser() -> (Killed, Client) {
    let missing = "install Debian's chromium and chromium-driver (apt-get install -y chromium \
                   chromium-driver; scripts/test does it), or set CHROMEDRIVER and CHROMIUM";
    let driver = binary(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    )
    .unwrap_or_else(|| panic!("no chromedriver found: {missing}"));
    let chromium = binary(
        "CHROMIUM",
        &["/usr/lib/chromium/chromium", "/usr/bin/chromium"],
    )
    .unwrap_or_else(|| panic!("no chromium found: {missing}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {missing}", driver.display()));
    let process = Killed(process);
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--hide-scrollbars"]
        }
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // chromedriver takes a moment to listen: poll for the session with a deadline.
    let client = loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no browser session from {} within {DEADLINE:?}: {e}",
                    driver.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    (process, client)
}

fn artifacts() -> PathBuf {
    let dir = std::env::var("DURAFLOW_ARTIFACTS").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts/dashboard"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = artifacts().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits for an element, failing after [`DEADLINE`] (with a screenshot, `timeout.png`).
async fn find(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => {
            screenshot(browser, "timeout.png").await;
            panic!("no {css:?} on the page within {DEADLINE:?}: {e}")
        }
    }
}

/// Waits until the element's text contains `text`.
async fn text_shows(browser: &Client, css: &str, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(el) = browser.find(Locator::Css(css)).await {
            if let Ok(t) = el.text().await {
                if t.contains(text) {
                    return t;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css:?} did not show {text:?} within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_cancels_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let engine = Engine::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .options(EngineOptions {
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        })
        .workflow("fulfil", fulfil)
        .workflow("notify", notify)
        .activity("charge", charge)
        .activity("reserve", reserve)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    for order in [1u64, 2, 13] {
        client
            .start("fulfil", &order)
            .id(format!("order-{order}"))
            .await
            .unwrap();
    }
    let until = |id: &'static str, status: InstanceStatus, waiting: bool| {
        let client = client.clone();
        async move {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                let info = client.status(id).await.unwrap();
                let journal = client.history(id, None).await.unwrap();
                let ready = !waiting
                    || journal
                        .iter()
                        .any(|e| e.kind.type_name() == "event_wait_started");
                if info.status == status && ready {
                    return info;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} never became {status}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until("order-1", InstanceStatus::Running, true).await;
    until("order-2", InstanceStatus::Running, true).await;
    until("order-13", InstanceStatus::Failed, false).await;

    let db = format!("sqlite:{}", path.display());
    let server = Server::start(&db, &["--token", TOKEN], &[]);
    let (_driver, browser) = browser().await;

    // The API needs the token: the page asks for it.
    browser.goto(&format!("{}/", server.base)).await.unwrap();
    let input = find(&browser, "#token-input").await;
    input.send_keys(TOKEN).await.unwrap();
    browser
        .find(Locator::Css("#token-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The list, with its counts by status.
    find(&browser, "tr[data-id='order-1']").await;
    find(&browser, "tr[data-id='notify-1']").await;
    let failed_row = find(&browser, "tr[data-id='order-13']").await;
    assert!(failed_row.text().await.unwrap().contains("failed"));
    text_shows(&browser, "#counts a[data-status='running']", "2").await;
    text_shows(&browser, "#counts a[data-status='failed']", "1").await;
    screenshot(&browser, "list.png").await;

    // The failed instance: its failing activity is highlighted, with its attempts.
    find(&browser, "tr[data-id='order-13'] a")
        .await
        .click()
        .await
        .unwrap();
    let charge = find(&browser, "#timeline tr.failed[data-op='0']").await;
    let row = charge.text().await.unwrap();
    assert!(
        row.contains("charge") && row.contains("card declined"),
        "{row}"
    );
    screenshot(&browser, "failed.png").await;

    // A running instance: its operations in order, its child linked.
    browser.goto(&format!("{}/#/", server.base)).await.unwrap();
    find(&browser, "tr[data-id='order-1'] a")
        .await
        .click()
        .await
        .unwrap();
    text_shows(&browser, "#instance-id", "order-1").await;
    let ops = find(&browser, "#timeline tbody")
        .await
        .text()
        .await
        .unwrap();
    let order: Vec<usize> = ["charge", "reserve", "timer", "notify", "approved"]
        .iter()
        .map(|name| {
            ops.find(name)
                .unwrap_or_else(|| panic!("{name} is not in the timeline: {ops}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "operations out of order: {ops}"
    );
    find(&browser, "#timeline a.instance-link").await;
    let child = browser
        .find(Locator::Css("#timeline a.instance-link"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(child, "notify-1");
    let wait = find(&browser, "#timeline tr[data-outcome='open']").await;
    assert!(wait.text().await.unwrap().contains("approved"));
    screenshot(&browser, "instance.png").await;

    // Cancel, behind a confirmation.
    find(&browser, "#action-cancel")
        .await
        .click()
        .await
        .unwrap();
    let reason = find(&browser, "#confirm-fields input[name='reason']").await;
    reason.clear().await.unwrap();
    reason.send_keys("customer called").await.unwrap();
    find(&browser, "#confirm-yes").await.click().await.unwrap();
    let info = until("order-1", InstanceStatus::Cancelled, false).await;
    assert!(info.failure.unwrap().message.contains("customer called"));
    find(&browser, "#instance-id .status[data-status='cancelled']").await;
    screenshot(&browser, "cancelled.png").await;
    // The other instances were not touched.
    assert_eq!(
        client.status("order-2").await.unwrap().status,
        InstanceStatus::Running
    );

    browser.close().await.unwrap();
    engine.shutdown().await;
}
