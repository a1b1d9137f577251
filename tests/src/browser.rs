//! A real headless Chromium for the dashboard's tests, driven over
//! WebDriver (`chromedriver`, Debian's `chromium-driver`) with fantoccini.
//!
//! Gated on `WEIR_CHROMEDRIVER` (the driver's path; `.ci/run` installs
//! Debian's `chromium` and `chromium-driver` and sets it): without it a test
//! prints `SKIPPED:` and returns; with it, a driver or browser that does not
//! start fails the test.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::free_port;

/// The driver and its browser session; the driver is killed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills the driver's process group: the driver and the browser it
    /// started, so no Chromium outlives its test.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            // SAFETY: killpg has no memory effects; the group is the
            // driver's own (process_group(0) at spawn).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver and a headless Chromium at 1280×800; `None` (after
/// `SKIPPED: <test>`) when `WEIR_CHROMEDRIVER` is not set.
pub async fn start(test: &str) -> Option<Browser> {
    let driver = match std::env::var("WEIR_CHROMEDRIVER") {
        Ok(path) if !path.trim().is_empty() => PathBuf::from(path),
        _ => {
            eprintln!(
                "SKIPPED: {test}: WEIR_CHROMEDRIVER is not set (.ci/run installs Debian's \
                 chromium and chromium-driver and sets it)"
            );
            return None;
        }
    };
    let chromium = std::env::var("WEIR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("WEIR_CHROMEDRIVER={} cannot start: {e}", driver.display()));
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // As root and in a closed network: no sandbox, no background
            // connections (refused here, and slow to fail).
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--no-first-run",
                "--disable-default-apps", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "WEIR_CHROMEDRIVER is set but no Chromium session started through {} \
                 (browser {chromium}): {e}",
                driver.display()
            ),
        }
    };
    Some(Browser {
        client,
        driver: child,
        _profile: profile,
    })
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The text of the first element matching `css`, once one exists and
    /// `accept` holds for its text, within `timeout`.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("(no such element)");
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if accept(&text) {
                    return text;
                }
                last = text;
            }
            if Instant::now() >= deadline {
                let page = self.client.source().await.unwrap_or_default();
                let clipped: String = page.chars().take(4000).collect();
                panic!(
                    "{css}: not as expected within {timeout:?}; last text {last:?}; page: {clipped}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `css` exists.
    pub async fn wait_for(&self, css: &str, timeout: Duration) {
        self.wait_text(css, timeout, |_| true).await;
    }

    /// Whether an element matching `css` exists now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Saves a PNG of the whole page (up to 2,400 px tall) to
    /// `dir/name.png` when `dir` is given; the window's size is restored.
    pub async fn screenshot(&self, dir: Option<&std::path::Path>, name: &str) {
        let Some(dir) = dir else { return };
        let (width, height) = self
            .client
            .get_window_size()
            .await
            .unwrap_or_else(|e| panic!("window size: {e}"));
        let page = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(height);
        let tall = u32::try_from(page.clamp(height, 2_400)).unwrap_or(2_400);
        self.resize(u32::try_from(width).unwrap_or(1280), tall)
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        std::fs::create_dir_all(dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
        self.resize(
            u32::try_from(width).unwrap_or(1280),
            u32::try_from(height).unwrap_or(800),
        )
        .await;
    }

    /// Sets the window's size (e.g. a narrow screen).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("resize: {e}"));
    }
}
