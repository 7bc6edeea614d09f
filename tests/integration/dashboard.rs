//! Issue 16, the dashboard in a real browser: headless Chromium driven over WebDriver
//! against `keygate start` (the real binary) with its admin API on TCP. The page loads
//! through the log-in URL, a refused request appears in the live list, its **Allow
//! host** button makes the next request to the host succeed, and no real value is in
//! the page's DOM. With `network.ask`, a held request appears in the approvals panel,
//! where **Allow once** lets it through and **Deny** refuses it.
//!
//! Skips when Chromium or chromedriver is missing, unless `KEYGATE_TEST_BROWSER=1`.
//! `KEYGATE_SAVE_SCREENSHOT=1` saves docs/dashboard.png.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::bin::{self, KeyutilsEntry, Running};
use crate::support::secret::unique;
use crate::support::upstream::HttpUpstream;
use crate::support::webdriver::{self, Driver};

/// A plain-HTTP site keygate refuses until the dashboard allows it.
const SITE: &str = "site.dash.test";
/// A site that stays refused (for the screenshot's refusals panel).
const OTHER: &str = "tracker.dash.test";
/// A plain-HTTP site whose requests are held for an answer (`network.ask`).
const HELD: &str = "held.dash.test";
/// How long a flow may take to reach the page: the issue asks for a second; polling
/// allows some slack for a loaded machine.
const LIVE_WITHIN: Duration = Duration::from_secs(2);

/// `curl -x PROXY URL` with the home's CA: the HTTP status.
fn curl(proxy: std::net::SocketAddr, ca: &Path, url: &str) -> u16 {
    let out = bin::run({
        let mut cmd = bin::curl(ca);
        cmd.args(["-o", "/dev/null", "-w", "%{http_code}", "-x"])
            .arg(format!("http://{proxy}"))
            .arg(url);
        cmd
    });
    out.stdout.trim().parse().unwrap_or(0)
}

/// Adds a static secret for `host` to the keyring: its entry (deleted on drop), its
/// name and its real value (which the page must never show).
fn add_secret(home: &Path, host: &str) -> (KeyutilsEntry, String, String) {
    let name = format!("kgtest-dash-{}", unique());
    let real = format!("real-dash-{}", unique());
    let entry = KeyutilsEntry(name.clone());
    let mut add = bin::keygate_keyutils(
        home,
        &[
            "secret",
            "add",
            &name,
            "--host",
            host,
            "--from-env",
            "DASH_REAL",
        ],
    );
    add.env("DASH_REAL", &real);
    let added = bin::run(add);
    assert_eq!(added.code, Some(0), "{added:?}");
    (entry, name, real)
}

/// The admin token, for the log-in URL.
// The admin token stays in the keyring: the admin TCP test of this run may be reading it.
fn admin_token(home: &Path) -> String {
    let raw = bin::run(bin::keygate_keyutils(home, &["admin", "token", "--raw"]));
    assert_eq!(raw.code, Some(0), "{raw:?}");
    raw.stdout.trim().to_string()
}

/// A `keygate start` with the admin API on TCP, `site:80` resolved to `upstream`, one
/// static secret bound to `secret_host`.
struct Started {
    home: tempfile::TempDir,
    admin_port: u16,
    keygate: Running,
    token: String,
    secret: (KeyutilsEntry, String, String),
}

fn start(upstream: &HttpUpstream, site: &str, network: &str, secret_host: &str) -> Started {
    let home = tempfile::tempdir().unwrap();
    let admin_port = bin::free_port();
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!(
            "listen: 127.0.0.1:0\nnetwork:\n  mode: custom\n  allow: [\"keygate.test\"]\n{network}admin:\n  listen: 127.0.0.1:{admin_port}\n"
        ),
    )
    .unwrap();
    let secret = add_secret(home.path(), secret_host);
    let resolve = format!("{site}:80={}", upstream.addr);
    let keygate = Running::start(bin::keygate_keyutils(
        home.path(),
        &["start", "--resolve", &resolve],
    ));
    keygate.wait_for_line("keygate admin API on http://");
    let token = admin_token(home.path());
    Started {
        home,
        admin_port,
        keygate,
        token,
        secret,
    }
}

/// The visible rows of the flow table: `[host, path, decision, status]`.
const ROWS: &str = "return Array.from(document.querySelectorAll('#flow-rows tr')).map(r => \
     [r.dataset.host, r.children[4].textContent, r.dataset.decision, r.children[7].textContent]);";

#[test]
fn the_dashboard_shows_flows_live_and_its_allow_button_lets_the_next_request_through() {
    let Some((chromium, chromedriver)) = webdriver::found() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(HttpUpstream::start());
    // One static secret, so the page has one to show (and must not show its value).
    let Started {
        home,
        admin_port,
        keygate,
        token,
        secret: (_secret, name, real),
    } = start(&upstream, SITE, "", "api.x.test");

    let driver = Driver::start(&chromium, &chromedriver);
    let browser = driver.session();
    browser.goto(&format!("http://127.0.0.1:{admin_port}/?token={token}"));
    let title = browser.eval("return document.title;", &[]);
    assert_eq!(title, "keygate", "the dashboard loaded");
    browser.wait_for(
        "the page's table and its live feed",
        Duration::from_secs(5),
        "return document.getElementById('flow-rows') !== null \
         && document.getElementById('live').textContent === 'live';",
        &[],
    );
    let url = browser.eval("return location.href;", &[]);
    assert_eq!(
        url,
        json!(format!("http://127.0.0.1:{admin_port}/")),
        "the token left the address bar"
    );

    // Traffic: one allowed HTTPS request (the self-test origin), two refused hosts.
    let ca = home.path().join("ca/keygate-ca.pem");
    let proxy = keygate.addr;
    assert_eq!(curl(proxy, &ca, "https://keygate.test/health"), 200);
    assert_eq!(curl(proxy, &ca, &format!("http://{OTHER}/pixel")), 403);
    let refused_at = Instant::now();
    assert_eq!(curl(proxy, &ca, &format!("http://{SITE}/first")), 403);
    let refused = browser.wait_for(
        "the refused flow in the live list",
        LIVE_WITHIN,
        "return Array.from(document.querySelectorAll('#flow-rows tr')).some(r => \
         r.dataset.host === arguments[0] && r.dataset.decision === 'deny' \
         && r.children[4].textContent === '/first');",
        &[json!(SITE)],
    );
    assert_eq!(refused, true);
    eprintln!(
        "the refusal reached the page {:?} after curl returned",
        refused_at.elapsed()
    );
    let rows = browser.eval(ROWS, &[]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "keygate.test" && r[1] == "/health" && r[3] == "200"),
        "{rows}"
    );
    browser.wait_for(
        "both hosts in the refusals panel",
        LIVE_WITHIN,
        "return document.querySelectorAll('#refusals li').length === 2;",
        &[],
    );

    // Allow host: the rule lands in keygate.yaml and the policy panel, and is in force.
    browser.click(&format!("#refusals li[data-host=\"{SITE}\"] button.allow"));
    browser.wait_for(
        "the new rule in the policy panel",
        LIVE_WITHIN,
        "const dd = document.querySelector('#policy dd[data-key=\"allow\"]'); \
         return dd !== null && dd.textContent.includes(arguments[0]);",
        &[json!(SITE)],
    );
    let yaml = std::fs::read_to_string(home.path().join("keygate.yaml")).unwrap();
    assert!(yaml.contains(&format!("\"{SITE}\"")), "{yaml}");
    assert_eq!(curl(proxy, &ca, &format!("http://{SITE}/second")), 200);
    assert_eq!(runtime.block_on(upstream.next_arrival()), "/second");
    browser.wait_for(
        "the allowed request in the live list",
        LIVE_WITHIN,
        "return Array.from(document.querySelectorAll('#flow-rows tr')).some(r => \
         r.dataset.host === arguments[0] && r.dataset.decision === 'allow' \
         && r.children[4].textContent === '/second' && r.children[7].textContent === '200');",
        &[json!(SITE)],
    );
    let still_refused = browser.eval(
        "return Array.from(document.querySelectorAll('#refusals li')).map(li => li.dataset.host);",
        &[],
    );
    assert_eq!(
        still_refused,
        json!([OTHER]),
        "the allowed host left the panel"
    );

    // The secret is listed by name; neither its value nor the admin token is in the DOM.
    browser.wait_for(
        "the secret in the secrets panel",
        Duration::from_secs(8),
        "return document.querySelector('#secret-rows tr[data-name=\"' + arguments[0] + '\"]') !== null;",
        &[json!(name)],
    );
    let dom = browser.eval("return document.documentElement.outerHTML;", &[]);
    let dom = dom.as_str().unwrap();
    assert!(dom.contains(&name));
    assert!(!dom.contains(&real), "the real value reached the page");
    assert!(!dom.contains(&token), "the admin token reached the page");
    let cookie = browser.eval("return document.cookie;", &[]);
    assert_eq!(cookie, json!(""), "the session cookie is HttpOnly");

    if std::env::var("KEYGATE_SAVE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("saved {}", path.display());
    }
    drop(browser);
    drop(driver);
    assert!(keygate.terminate().success());
}

/// The held request for `path` in the approvals panel, once it is there: its
/// `data-id`, its `.what`, `.client` and `.since` texts.
const HELD_ROW: &str = "const row = Array.from(document.querySelectorAll('#approvals .approval')).find(r => \
     r.querySelector('.what').textContent.endsWith(arguments[0])); \
     return row ? [row.dataset.id, row.querySelector('.what').textContent, \
     row.querySelector('.client').textContent, row.querySelector('.since').textContent] : null;";

/// `network.ask` in the dashboard: a held request appears in the approvals panel within
/// [`LIVE_WITHIN`]; **Allow once** lets it reach the upstream, **Deny** refuses the next
/// one (403), the panel says nothing is waiting once both are answered, and an answer
/// the API refuses shows its reason.
#[test]
fn the_dashboard_shows_held_requests_and_answers_them() {
    let Some((chromium, chromedriver)) = webdriver::found() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(HttpUpstream::start());
    let Started {
        home,
        admin_port,
        keygate,
        token,
        secret: (_secret, name, real),
    } = start(
        &upstream,
        HELD,
        "  ask: true\n  ask_timeout: 20s\n",
        "api.held.test",
    );

    let driver = Driver::start(&chromium, &chromedriver);
    let browser = driver.session();
    browser.goto(&format!("http://127.0.0.1:{admin_port}/?token={token}"));
    browser.wait_for(
        "the empty approvals panel",
        Duration::from_secs(5),
        "const empty = document.getElementById('approvals-empty'); \
         return empty !== null && !empty.hidden && empty.textContent === 'Nothing is waiting.' \
         && document.getElementById('live').textContent === 'live';",
        &[],
    );

    // curl waits in its own thread while its request is held (curl's own limit is
    // support::WAIT, well under ask_timeout).
    let ca = home.path().join("ca/keygate-ca.pem");
    let proxy = keygate.addr;
    let held_curl = |path: &'static str| {
        let ca = ca.clone();
        std::thread::spawn(move || curl(proxy, &ca, &format!("http://{HELD}{path}")))
    };

    // Allow once: the held request reaches the upstream.
    let sent = Instant::now();
    let once = held_curl("/once");
    let row = browser.wait_for(
        "the held request in the approvals panel",
        LIVE_WITHIN,
        HELD_ROW,
        &[json!("/once")],
    );
    eprintln!(
        "the held request reached the page {:?} after curl started",
        sent.elapsed()
    );
    assert_eq!(row[1], json!(format!("GET http://{HELD}/once")), "{row}");
    assert!(
        !row[2].as_str().unwrap().is_empty(),
        "the client is shown: {row}"
    );
    assert!(row[3].as_str().unwrap().starts_with("since "), "{row}");
    assert_eq!(
        browser.eval(
            "return document.getElementById('approvals-empty').hidden;",
            &[]
        ),
        json!(true)
    );
    let id = row[0].as_str().unwrap().to_string();
    browser.click(&format!(
        "#approvals .approval[data-id=\"{id}\"] button.approve-once"
    ));
    assert_eq!(once.join().unwrap(), 200, "allowed once");
    assert_eq!(runtime.block_on(upstream.next_arrival()), "/once");
    browser.wait_for(
        "the answered request gone from the panel",
        LIVE_WITHIN,
        "return document.querySelector('#approvals .approval[data-id=\"' + arguments[0] + '\"]') === null;",
        &[json!(id)],
    );

    // Once is once: the next request is held again; Deny refuses it.
    let denied = held_curl("/denied");
    let row = browser.wait_for(
        "the second held request in the approvals panel",
        LIVE_WITHIN,
        HELD_ROW,
        &[json!("/denied")],
    );
    let second = row[0].as_str().unwrap().to_string();
    assert_ne!(second, id);
    browser.click(&format!(
        "#approvals .approval[data-id=\"{second}\"] button.approve-deny"
    ));
    assert_eq!(denied.join().unwrap(), 403, "denied");
    assert_eq!(upstream.try_arrival(), None, "a denied request never left");
    browser.wait_for(
        "the panel empty again",
        LIVE_WITHIN,
        "const empty = document.getElementById('approvals-empty'); \
         return !empty.hidden && document.querySelectorAll('#approvals .approval').length === 0;",
        &[],
    );
    browser.wait_for(
        "the denied request in the live list, with who denied it",
        LIVE_WITHIN,
        "return Array.from(document.querySelectorAll('#flow-rows tr')).some(r => \
         r.dataset.host === arguments[0] && r.dataset.decision === 'deny' \
         && r.children[4].textContent === '/denied' \
         && r.title.includes('denied by the admin API when asked'));",
        &[json!(HELD)],
    );

    // A failed answer shows the API's reason: the request is denied through the API
    // first, then the page's Allow once gets a 404 (the click runs in the same script,
    // so the next poll cannot remove the row first).
    let late = held_curl("/late");
    let row = browser.wait_for(
        "the third held request in the approvals panel",
        LIVE_WITHIN,
        HELD_ROW,
        &[json!("/late")],
    );
    let third = row[0].as_str().unwrap().to_string();
    let status = browser.eval(
        "const row = document.querySelector('#approvals .approval[data-id=\"' + arguments[0] + '\"]'); \
         return fetch('/api/approvals/' + arguments[0], {method: 'POST', \
           headers: {'Content-Type': 'application/json'}, body: '{\"decision\":\"deny\"}'}) \
         .then(r => { row.querySelector('button.approve-once').click(); return r.status; });",
        &[json!(third)],
    );
    assert_eq!(status, 200, "denied through the API");
    assert_eq!(
        late.join().unwrap(),
        403,
        "denied, whatever the page said after"
    );
    let said = browser.wait_for(
        "the failed answer's reason",
        LIVE_WITHIN,
        "const notice = document.getElementById('notice').textContent; \
         return notice.includes('is waiting') ? notice : null;",
        &[],
    );
    assert!(
        said.as_str()
            .unwrap()
            .contains(&format!("no request {third} is waiting")),
        "{said}"
    );
    let yaml = std::fs::read_to_string(home.path().join("keygate.yaml")).unwrap();
    assert!(!yaml.contains(HELD), "no answer wrote a rule: {yaml}");

    // The secret is listed by name; neither its value nor the admin token is in the page.
    browser.wait_for(
        "the secret in the secrets panel",
        Duration::from_secs(8),
        "return document.querySelector('#secret-rows tr[data-name=\"' + arguments[0] + '\"]') !== null;",
        &[json!(name)],
    );
    let dom = browser.eval("return document.documentElement.outerHTML;", &[]);
    let dom = dom.as_str().unwrap();
    assert!(dom.contains(&name));
    assert!(!dom.contains(&real), "the real value reached the page");
    assert!(!dom.contains(&token), "the admin token reached the page");

    drop(browser);
    drop(driver);
    assert!(keygate.terminate().success());
}
