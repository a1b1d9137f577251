//! The dashboard (issue #15) in a real headless Chromium (Debian's, over
//! WebDriver: `weir_tests::browser`), against the real `weir` binary: a run
//! created with the CLI appears live; its page shows its timeline, why it
//! waits and its plugins' decisions (a mutator's patch as a diff) and
//! follows its log; it is cancelled from the page; the plugins and pool
//! pages show what they should; with auth on, a submitter signs in with a
//! token and sees only its team's runs and no cancel button, which the API
//! refuses anyway.
//!
//! Gated on `WEIR_CHROMEDRIVER` (`.ci/run` sets it). With
//! `WEIR_SCREENSHOTS=<dir>` the pages' screenshots are saved there (the ones
//! in `docs/dashboard/` came from here).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use reqwest::StatusCode;
use weir_tests::browser::{self, Browser};
use weir_tests::harness::{WeirProcess, component, create_token, free_port};

const LIVE: Duration = Duration::from_secs(30);

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("WEIR_SCREENSHOTS").map(PathBuf::from)
}

/// Whether the page is no wider than the window (wide tables scroll
/// inside their own box).
async fn fits(browser: &Browser) -> bool {
    browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_appear_live_say_why_they_wait_show_decisions_and_cancel_from_the_page() {
    let Some(browser) = browser::start("dashboard::runs_appear_live").await else {
        return;
    };
    let shots = screenshots();
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    let base = weir.url.clone();
    weir.cli_json(&[
        "pool",
        "create",
        "w",
        "--type",
        "process",
        "--concurrency-limit",
        "1",
    ]);
    for plugin in ["always-admit", "add-label"] {
        let path = component(plugin);
        weir.cli_json(&["plugin", "add", plugin, path.to_str().expect("path")]);
        weir.cli_json(&["pool", "bind", "w", plugin]);
    }
    // The same mutator in shadow too: its decisions show as such.
    weir.cli_json(&["pool", "bind", "w", "add-label", "--mode", "shadow"]);
    weir.cli_json(&[
        "deployment",
        "create",
        "talker",
        "--pool",
        "w",
        "--job-variables",
        r#"{"command": "sh -c 'echo hello from weir; sleep 120'"}"#,
    ]);
    weir.cli_json(&[
        "deployment",
        "create",
        "quick",
        "--pool",
        "w",
        "--job-variables",
        r#"{"command": "true"}"#,
    ]);

    // The runs page, open before the runs exist: they appear live.
    browser.goto(&format!("{base}/runs")).await;
    browser
        .wait_text("#live", LIVE, |t| t.trim() == "live")
        .await;
    let holder = weir.create_run(&["talker"]);
    browser
        .wait_for(&format!("tr[data-run-id='{holder}']"), LIVE)
        .await;
    browser
        .wait_for(
            &format!("tr[data-run-id='{holder}'][data-state='Running']"),
            LIVE,
        )
        .await;
    let waiting = weir.create_run(&["quick"]);
    browser
        .wait_for(
            &format!("tr[data-run-id='{waiting}'][data-state='Scheduled']"),
            LIVE,
        )
        .await;
    browser.screenshot(shots.as_deref(), "runs").await;
    // The filter is in the URL: a pasted link shows the same list.
    browser.goto(&format!("{base}/runs?state=Running")).await;
    browser
        .wait_for(&format!("tr[data-run-id='{holder}']"), LIVE)
        .await;
    assert!(
        !browser
            .exists(&format!("tr[data-run-id='{waiting}']"))
            .await,
        "a Scheduled run is not listed under state=Running"
    );

    // The waiting run's page: why it waits, its timeline, the admission
    // plugin's decision.
    browser.goto(&format!("{base}/runs/{waiting}")).await;
    let why = browser
        .wait_text("#waiting-summary", LIVE, |t| !t.is_empty())
        .await;
    assert!(why.contains("pool w is full (1/1 slots)"), "{why}");
    assert!(
        browser.exists("#waiting li[data-kind='limit']").await,
        "the full pool is listed as a hold"
    );
    assert!(browser.exists("#timeline li[data-state='Scheduled']").await);
    let decision = browser
        .wait_text("#decisions tr[data-plugin='always-admit']", LIVE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(decision.contains("admit"), "{decision}");
    browser.screenshot(shots.as_deref(), "run-waiting").await;

    // The running run's page: the mutator's patch as a diff, its log
    // followed live.
    browser.goto(&format!("{base}/runs/{holder}")).await;
    let diff = browser
        .wait_text("#decisions tr[data-plugin='add-label'] .diff", LIVE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(diff.contains("/env/ADDED"), "{diff}");
    let shadow = browser
        .wait_text(
            "#decisions tr[data-plugin='add-label'][data-mode='shadow'][data-agrees='true']",
            LIVE,
            |t| !t.is_empty(),
        )
        .await;
    assert!(shadow.contains("shadow · agrees"), "{shadow}");
    browser
        .wait_text("#logs", LIVE, |t| t.contains("hello from weir"))
        .await;
    browser
        .wait_text("#run-state", LIVE, |t| t.trim() == "Running")
        .await;
    browser.screenshot(shots.as_deref(), "run").await;

    // Cancelled from the page; the CLI agrees, and the waiting run goes.
    browser.click("#cancel").await;
    browser
        .wait_text("#run-state", LIVE, |t| t.trim() == "Cancelled")
        .await;
    assert!(
        !browser.exists("#cancel").await,
        "an ended run has no cancel button"
    );
    assert_eq!(weir.inspect(&holder)["state"], "Cancelled");
    weir.wait_state(&waiting, &["Completed"]);
    browser.goto(&format!("{base}/runs/{waiting}")).await;
    browser
        .wait_text("#run-state", LIVE, |t| t.trim() == "Completed")
        .await;
    assert!(
        !browser.exists("#waiting-summary").await,
        "a run that no longer waits says no reason"
    );

    // The plugins page: both plugins, their decisions counted.
    browser.goto(&format!("{base}/plugins")).await;
    // always-admit judged the two runs: its world, and both admits counted.
    let admit = browser
        .wait_text("#plugin-always-admit", LIVE, |t| {
            t.contains("Outcomes: 2 admit")
        })
        .await;
    assert!(admit.contains("admission"), "{admit}");
    let shadowed = browser
        .wait_text("#plugin-add-label .shadow-outcomes", LIVE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        shadowed.contains("In shadow: 2 patch")
            && shadowed.contains("disagreed with what was enforced: 0"),
        "{shadowed}"
    );
    browser.screenshot(shots.as_deref(), "plugins").await;

    // Replay from the page (issue #16): a version 2 of add-label that traps
    // (the `panics` component) judges its two recorded decisions again.
    let panics = component("panics");
    let v2 = weir.cli_json(&["plugin", "add", "add-label", panics.to_str().expect("path")]);
    assert_eq!(v2["version"], 2, "{v2}");
    browser.goto(&format!("{base}/plugins")).await;
    browser
        .wait_for("#plugin-add-label form.replay button", LIVE)
        .await;
    browser.click("#plugin-add-label form.replay button").await;
    let report = browser
        .wait_text("#plugin-add-label .replay-summary", LIVE, |t| {
            t.contains("judged")
        })
        .await;
    assert_eq!(
        report.trim(),
        "version 2: judged 2, same 0, different 2: errors 2",
        "{report}"
    );
    let rows = browser
        .wait_text("#plugin-add-label .replay-report table", LIVE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        rows.contains(&waiting) && rows.contains("1 patch operation(s) → error (trap"),
        "{rows}"
    );
    browser.screenshot(shots.as_deref(), "replay").await;

    // The pool's page and the overview.
    browser.goto(&format!("{base}/pools/w")).await;
    browser
        .wait_text("main", LIVE, |t| {
            t.contains("default") && t.contains("add-label")
        })
        .await;
    browser.screenshot(shots.as_deref(), "pool").await;
    browser.goto(&format!("{base}/")).await;
    browser
        .wait_text("[data-state='Cancelled']", LIVE, |t| t.contains('1'))
        .await;
    browser.wait_for("a[href='/pools/w']", LIVE).await;
    browser.screenshot(shots.as_deref(), "overview").await;

    // Keyboard: the first Tab reaches the skip link.
    browser
        .client
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys(&char::from(Key::Tab).to_string())
        .await
        .expect("Tab");
    let first = browser
        .client
        .active_element()
        .await
        .expect("focused element");
    let text = first.text().await.unwrap_or_default();
    assert!(text.to_lowercase().contains("skip"), "{text:?}");

    // A narrow screen: no page-wide horizontal scroll.
    for path in ["/", "/runs", &format!("/runs/{waiting}"), "/plugins"] {
        browser.resize(390, 844).await;
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_for("main h1", LIVE).await;
        assert!(fits(&browser).await, "{path} is wider than 390 px");
    }
    browser.goto(&format!("{base}/runs")).await;
    browser
        .wait_for(&format!("tr[data-run-id='{waiting}']"), LIVE)
        .await;
    browser.screenshot(shots.as_deref(), "runs-narrow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_signs_in_and_sees_only_its_runs_and_no_cancel_button() {
    let Some(browser) = browser::start("dashboard::a_submitter_signs_in").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start_with_args(dir.path(), None, free_port(), &["--auth", "on"]);
    let base = weir.url.clone();
    let admin = create_token(&weir.data_dir, &["--role", "admin"]);
    let submitter = create_token(&weir.data_dir, &["--role", "submitter", "--team", "a"]);
    let as_admin = |args: &[&str]| {
        let mut all = vec!["--token", admin.as_str()];
        all.extend_from_slice(args);
        weir.cli_json(&all)
    };
    as_admin(&["pool", "create", "w", "--type", "process"]);
    for (name, team) in [("da", "a"), ("db", "b")] {
        as_admin(&[
            "deployment",
            "create",
            name,
            "--pool",
            "w",
            "--team",
            team,
            "--job-variables",
            r#"{"command": "sleep 120"}"#,
        ]);
    }
    let ra = as_admin(&["run", "create", "da"])["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let rb = as_admin(&["run", "create", "db"])["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // No token: the page asks for one.
    browser.goto(&format!("{base}/runs")).await;
    browser.wait_for("#signin", LIVE).await;
    browser
        .client
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(&submitter)
        .await
        .expect("type the token");
    browser.click("#signin button[type='submit']").await;
    let who = browser
        .wait_text("#whoami", LIVE, |t| t.contains("submitter"))
        .await;
    assert!(who.contains('a'), "{who}");
    browser
        .wait_for(&format!("tr[data-run-id='{ra}']"), LIVE)
        .await;
    assert!(
        !browser.exists(&format!("tr[data-run-id='{rb}']")).await,
        "team b's run is not shown to team a's submitter"
    );
    browser
        .screenshot(screenshots().as_deref(), "signed-in")
        .await;

    // Its own run: no cancel button, since a submitter may not cancel...
    browser.goto(&format!("{base}/runs/{ra}")).await;
    browser
        .wait_text("#run-state", LIVE, |t| !t.trim().is_empty())
        .await;
    assert!(
        !browser.exists("#cancel").await,
        "a submitter gets no cancel button"
    );
    // ...and the API refuses it anyway.
    let refused = reqwest::Client::new()
        .post(format!("{base}/api/v1/runs/{ra}/cancel"))
        .bearer_auth(&submitter)
        .send()
        .await
        .expect("cancel request");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Another team's run: an error on the page, no data.
    browser.goto(&format!("{base}/runs/{rb}")).await;
    browser
        .wait_text(".error", LIVE, |t| !t.trim().is_empty())
        .await;
    assert!(!browser.exists("#run-state").await);

    // Signing out asks for a token again.
    browser.click("#signout").await;
    browser.wait_for("#signin", LIVE).await;
    for run in [&ra, &rb] {
        as_admin(&["run", "cancel", run]);
    }
}

/// `event: runs` frames read off `/api/v1/runs/events`.
struct RunEvents<S> {
    body: std::pin::Pin<Box<S>>,
    seen: String,
}

impl<S, B> RunEvents<S>
where
    S: futures::Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]>,
{
    /// The next `event: runs` frame, within [`LIVE`]; `what` names the wait.
    async fn next_runs_event(&mut self, what: &str) -> String {
        use futures::StreamExt;
        loop {
            while let Some(end) = self.seen.find("\n\n") {
                let frame: String = self.seen.drain(..end + 2).collect();
                if frame.contains("event: runs") {
                    return frame;
                }
            }
            let chunk = tokio::time::timeout(LIVE, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("{what}: nothing within {LIVE:?}"))
                .expect("the stream is open")
                .expect("a chunk");
            self.seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    }
}

/// Without a browser: the shell and its assets (embedded, same-origin
/// only, revalidated by ETag), and the endpoints the pages read — the
/// summary's counts, the live events that follow a run, a plugin's
/// decisions — with their errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_and_their_endpoints_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    let base = weir.url.clone();
    let http = reqwest::Client::new();

    for path in ["/", "/runs", "/runs/anything", "/plugins", "/pools/w"] {
        let page = http.get(format!("{base}{path}")).send().await.expect(path);
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        let csp = page
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        let body = page.text().await.expect("body");
        assert!(
            body.contains("/ui/app.js") && body.contains("<main"),
            "{path}"
        );
    }
    let script = http
        .get(format!("{base}/ui/app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(script.status(), StatusCode::OK);
    let etag = script
        .headers()
        .get("etag")
        .cloned()
        .expect("the script has an ETag");
    let again = http
        .get(format!("{base}/ui/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("js again");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let css = http
        .get(format!("{base}/ui/app.css"))
        .send()
        .await
        .expect("css");
    assert_eq!(
        css.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/css; charset=utf-8")
    );
    // Not a page: the API's 404.
    let missing = http
        .get(format!("{base}/nowhere"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let who: serde_json::Value = http
        .get(format!("{base}/api/v1/whoami"))
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("JSON");
    assert_eq!(who["auth"], false);
    assert_eq!(who["may"]["cancel_runs"], true);

    // The event stream: one event at once, another when a run is created.
    let events = http
        .get(format!("{base}/api/v1/runs/events"))
        .send()
        .await
        .expect("events");
    assert_eq!(
        events
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut stream = RunEvents {
        body: Box::pin(events.bytes_stream()),
        seen: String::new(),
    };
    let first = stream
        .next_runs_event("the first event comes at once")
        .await;
    weir.cli_json(&["pool", "create", "w", "--type", "process"]);
    let id = weir.create_run(&["--pool", "w", "--command", "true"]);
    let frames = [
        first,
        stream.next_runs_event("an event follows the new run").await,
    ];
    assert_ne!(frames[0], frames[1], "the mark moved");
    weir.wait_state(&id, &["Completed"]);

    let summary: serde_json::Value = http
        .get(format!("{base}/api/v1/summary"))
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("JSON");
    assert_eq!(summary["runs_by_state"]["Completed"], 1, "{summary}");
    assert_eq!(summary["runs_by_state"]["Running"], 0, "{summary}");
    assert!(
        summary["ended_per_minute"].is_null(),
        "one sample: {summary}"
    );

    // A plugin's decisions: its admit of the run, counted; errors named.
    let path = component("always-admit");
    weir.cli_json(&[
        "plugin",
        "add",
        "always-admit",
        path.to_str().expect("path"),
    ]);
    weir.cli_json(&["pool", "bind", "w", "always-admit"]);
    let judged = weir.create_run(&["--pool", "w", "--command", "true"]);
    weir.wait_state(&judged, &["Completed"]);
    let decisions: serde_json::Value = http
        .get(format!("{base}/api/v1/plugins/always-admit/decisions"))
        .send()
        .await
        .expect("decisions")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        decisions["items"][0]["run_id"],
        judged.as_str(),
        "{decisions}"
    );
    assert_eq!(decisions["items"][0]["outcome"], "admit", "{decisions}");
    assert_eq!(decisions["outcomes"]["admit"], 1, "{decisions}");
    for (path, status) in [
        ("/api/v1/plugins/nope/decisions", StatusCode::NOT_FOUND),
        (
            "/api/v1/plugins/always-admit/decisions?limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/plugins/always-admit/decisions?since=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect(path);
        assert_eq!(r.status(), status, "{path}");
    }
}
