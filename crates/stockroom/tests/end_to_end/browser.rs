//! The dashboard in a real browser: headless Chromium, driven by
//! `playwright-core` from a Node script (`tests/browser/dashboard.cjs`), opens
//! the page of a running system, sees its numbers change as orders are placed
//! through the API, sees those orders and an operator's adjustment appear in
//! the movement feed and the operator's purchase limit in the stock table,
//! runs a flash sale from the page's form, waits for its
//! result, checks the page on a phone's screen, and saves screenshots under
//! `target/` (`dashboard-screenshot.png`, `dashboard-screenshot-phone.png`).
//!
//! It runs when `STOCKROOM_TEST_BROWSER` is set: to Chromium's path, or to
//! `1` for the `chromium` on the PATH. `node` must be on the PATH and find
//! `playwright-core` (`NODE_PATH`); `.ci/run` installs all three. Under `CI`
//! a missing variable or tool fails the test: it must never pass by skipping.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dashboard::Watched;

/// The longest the browser script may take: a page load, a few seconds of
/// orders and a flash sale, on a busy two-core machine.
const BROWSER_TIMEOUT_MS: u64 = 180_000;

/// The Chromium to drive, or `None` when the test is to be skipped.
fn chromium() -> Option<PathBuf> {
    let setting = match std::env::var("STOCKROOM_TEST_BROWSER") {
        Ok(setting) if !setting.is_empty() => setting,
        _ if std::env::var_os("CI").is_some() => {
            panic!("STOCKROOM_TEST_BROWSER is not set, and CI must run the browser test")
        }
        _ => {
            eprintln!("skipped: STOCKROOM_TEST_BROWSER is not set");
            return None;
        }
    };
    let path = if setting == "1" {
        find_on_path("chromium")
            .unwrap_or_else(|| panic!("STOCKROOM_TEST_BROWSER=1 but no chromium is on the PATH"))
    } else {
        PathBuf::from(setting)
    };
    assert!(path.is_file(), "no browser at {}", path.display());
    Some(path)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_works_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let node = find_on_path("node").expect("node is on the PATH (the browser test needs it)");
    let resolves = std::process::Command::new(&node)
        .args(["-e", "require.resolve('playwright-core')"])
        .output()
        .expect("node runs");
    assert!(
        resolves.status.success(),
        "node cannot find playwright-core (install it and set NODE_PATH, as .ci/run does): {}",
        String::from_utf8_lossy(&resolves.stderr)
    );

    let watched = Watched::start(25).await;
    let target = workspace().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let screenshot = target.join("dashboard-screenshot.png");
    let phone_screenshot = target.join("dashboard-screenshot-phone.png");
    for old in [&screenshot, &phone_screenshot] {
        let _ = std::fs::remove_file(old);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let run = tokio::process::Command::new(&node)
        .arg(&script)
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_URL", &watched.dashboard_url)
        .env("ORDER_URL", &watched.system.system.urls.order)
        .env("DATA_URL", &watched.system.system.urls.data)
        .env("OPERATOR_TOKEN", watched.operator_token.expose())
        .env("SCREENSHOT", &screenshot)
        .env("PHONE_SCREENSHOT", &phone_screenshot)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_millis(BROWSER_TIMEOUT_MS), run)
        .await
        .expect("the browser script finishes in time")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    for picture in [&screenshot, &phone_screenshot] {
        let bytes = std::fs::read(picture).expect("the screenshot was saved");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is not a screenshot",
            picture.display()
        );
    }
    watched.stop().await;
}
