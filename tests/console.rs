//! The web console, end to end in a real browser (Debian's chromium, headless, through
//! chromedriver): a node with two brokers, triggers that deliver, one whose subscriber fails, one
//! that cannot resolve its subscriber, and a parked event. The console logs in with the admin
//! token, shows the topology with the right states, shows a sent event in the tail within a
//! second, opens it with its hops, and re-drives the parked event once the subscriber is back.
//! Without the token the console and `/-/` answer 401; a change made with the console's cookie but
//! without its CSRF token is refused.
//!
//! With `KNACTOR_CONSOLE_SCREENSHOTS=1` the test writes the screenshots the README shows to
//! `docs/console/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const TOKEN: &str = "console-admin-token-for-tests";

fn config(recorder: &Recorder) -> String {
    let broker = |name: &str| {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}, namespace: e2e}}\nspec: {{}}\n"
        )
    };
    let trigger = |name: &str, broker: &str, filter: &str, subscriber: &str| {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  broker: {broker}\n  {filter}\n  subscriber: {subscriber}\n  delivery: {{retry: 1, backoffDelay: PT0.05S}}\n"
        )
    };
    [
        broker("default"),
        broker("audit"),
        trigger(
            "orders",
            "default",
            "filter: {attributes: {type: order.created}}",
            &format!("{{uri: '{}'}}", recorder.at("/orders")),
        ),
        trigger(
            "payments",
            "default",
            "filters: [{cesql: \"type = 'payment.made' AND source LIKE '/e2e%'\"}]",
            &format!("{{uri: '{}'}}", recorder.at("/payments")),
        ),
        trigger(
            "shipping",
            "default",
            "filter: {attributes: {type: order.shipped}}",
            "{ref: {apiVersion: v1, kind: Service, name: shipping}}",
        ),
        trigger(
            "everything",
            "audit",
            "filters: [{prefix: {type: order}}]",
            &format!("{{uri: '{}'}}", recorder.at("/audit")),
        ),
    ]
    .concat()
}

/// Sends one binary-mode event with JSON data; returns the status.
fn send_json(url: &str, id: &str, ty: &str, data: &str) -> u16 {
    http()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/e2e")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

fn bearer(request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
    request.header("authorization", format!("Bearer {TOKEN}"))
}

/// Where screenshots go, when asked for.
fn screenshots() -> Option<std::path::PathBuf> {
    std::env::var_os("KNACTOR_CONSOLE_SCREENSHOTS")
        .filter(|value| value == "1")
        .map(|_| repo_path("docs/console"))
}

fn snap(browser: &Browser, name: &str) {
    if let Some(dir) = screenshots() {
        // The page's last paint settles (sparklines, a fresh sample) before the picture.
        std::thread::sleep(Duration::from_millis(400));
        browser.save_screenshot(&dir.join(format!("{name}.png")));
    }
}

fn state_of(browser: &Browser, kind: &str, name: &str) -> Option<(String, String)> {
    let css = format!("#graph g.node.{kind}[data-name=\"{name}\"]");
    Some((
        browser.attr(&css, "data-state")?,
        browser.attr(&css, "data-reason").unwrap_or_default(),
    ))
}

#[test]
fn the_console_shows_the_mesh_follows_an_event_and_redrives_what_was_parked() {
    let recorder = Recorder::start();
    let failing = Arc::new(AtomicBool::new(true));
    let fails = failing.clone();
    recorder.on("/payments", move |_, _| {
        if fails.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::accepted()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let node = NodeProcess::start_on(
        &config(&recorder),
        &[
            "--admin-token-file",
            token.to_str().unwrap(),
            "--jaeger-ui-url",
            "http://127.0.0.1:16686",
            "--node-id",
            "knactor-0",
        ],
        Channel::Memory,
    );
    let broker = node.broker("e2e", "default");

    // A payment the subscriber refuses: parked once its retry fails too.
    let parked_id = "payment-parked-1";
    assert_eq!(
        send_json(
            &broker,
            parked_id,
            "payment.made",
            r#"{"order": "A-1042", "amount": 129.5}"#
        ),
        202
    );
    let parked_url = format!("{}/-/brokers/e2e/default/parked", node.url);
    wait_until("the payment is parked", Duration::from_secs(20), || {
        let listed: serde_json::Value = bearer(http().get(&parked_url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        listed["total"] == 1
    });

    let browser = Browser::start(1400, 860);
    browser.goto(&format!("{}/#/topology", node.url));
    // No session yet: the page asks for the token.
    browser.wait_until("the login form shows", Duration::from_secs(20), |b| {
        b.exists("#login #token")
    });
    snap(&browser, "login");
    browser.type_into("#token", "not-the-token");
    browser.click("#login button[type=submit]");
    browser.wait_until("a wrong token is refused", Duration::from_secs(10), |b| {
        b.texts("#login-error").concat().contains("not the node's")
    });
    browser.eval("document.getElementById('token').value = ''; return null;");
    browser.type_into("#token", TOKEN);
    browser.click("#login button[type=submit]");

    // The topology, with the states and reasons `knactor status` gives.
    browser.wait_until(
        "the topology shows every broker and trigger",
        Duration::from_secs(20),
        |b| {
            state_of(b, "trigger", "e2e/shipping").is_some()
                && state_of(b, "trigger", "e2e/everything").is_some()
        },
    );
    assert_eq!(
        state_of(&browser, "trigger", "e2e/shipping"),
        Some(("notReady".into(), "SubscriberResolveFailed".into()))
    );
    assert_eq!(
        state_of(&browser, "broker", "e2e/default").map(|(state, _)| state),
        Some("ready".into())
    );
    assert_eq!(
        state_of(&browser, "trigger", "e2e/orders").map(|(state, _)| state),
        Some("ready".into())
    );
    let title = browser.texts("#graph g.node.trigger[data-name=\"e2e/shipping\"] title");
    let hover = browser.eval(
        "return document.querySelector('#graph g.node.trigger[data-name=\"e2e/shipping\"] title').textContent;",
    );
    assert!(
        hover
            .as_str()
            .unwrap_or_default()
            .contains("SubscriberResolveFailed"),
        "{hover} {title:?}"
    );
    // A payment fails while the page watches: its trigger turns degraded, saying why.
    assert_eq!(send(&broker, "payment-failing-2", "payment.made"), 202);
    browser.wait_until(
        "the failing trigger is shown degraded",
        Duration::from_secs(15),
        |b| {
            state_of(b, "trigger", "e2e/payments")
                == Some(("degraded".into(), "DeliveriesFailing".into()))
        },
    );
    // A trigger's filter as written and its delivery as it runs.
    browser.click("#graph g.node.trigger[data-name=\"e2e/payments\"]");
    browser.wait_until("the trigger's detail shows", Duration::from_secs(10), |b| {
        b.texts("#detail-filter")
            .concat()
            .contains("type = 'payment.made' AND source LIKE '/e2e%'")
    });
    let delivery = browser.texts("#detail-delivery").concat();
    assert!(
        delivery.contains("the trigger's delivery") && delivery.contains("PT0.05S"),
        "{delivery}"
    );
    snap(&browser, "topology");

    // The tail: a sent event shows within a second, with its outcome per trigger.
    browser.goto(&format!("{}/#/tail/e2e/default", node.url));
    browser.wait_until(
        "the tail follows the broker",
        Duration::from_secs(10),
        |b| b.texts("#tail-status").concat().contains("following"),
    );
    let sent = Instant::now();
    assert_eq!(send(&broker, "order-tail-1", "order.created"), 202);
    browser.wait_until(
        "the sent event shows in the tail",
        Duration::from_secs(5),
        |b| b.exists("#tail-rows tr[data-id=\"order-tail-1\"]"),
    );
    let shown_after = sent.elapsed();
    eprintln!("console: the event showed in the tail {shown_after:?} after its 202");
    assert!(
        shown_after < Duration::from_secs(1),
        "the event took {shown_after:?} to show in the tail"
    );
    browser.wait_until(
        "the tail shows the event delivered",
        Duration::from_secs(10),
        |b| {
            b.exists(
                "#tail-rows tr[data-id=\"order-tail-1\"] span.chip[data-trigger=\"orders\"][data-outcome=\"delivered\"]",
            )
        },
    );
    let row = browser
        .texts("#tail-rows tr[data-id=\"order-tail-1\"]")
        .concat();
    assert!(row.contains("order.created"), "{row}");
    assert_eq!(send(&broker, "payment-tail-3", "payment.made"), 202);
    browser.wait_until("the tail shows a retry", Duration::from_secs(10), |b| {
        b.exists("#tail-rows tr[data-id=\"payment-tail-3\"] span.chip[data-trigger=\"payments\"]")
    });
    snap(&browser, "tail");

    // The event: its hops from the journal, with timings, and the trigger that did not take it.
    browser.click("#tail-rows tr[data-id=\"order-tail-1\"]");
    browser.wait_until("the event's hops show", Duration::from_secs(10), |b| {
        let stages: Vec<String> = b
            .texts("#hops tbody tr td:nth-child(4)")
            .into_iter()
            .collect();
        ["stored", "dispatched", "delivered"]
            .iter()
            .all(|stage| stages.iter().any(|shown| shown == stage))
    });
    let verdicts = browser.texts("#verdicts").concat();
    assert!(
        verdicts.contains("e2e/payments") && verdicts.contains("did not match"),
        "{verdicts}"
    );
    assert_eq!(
        browser.texts("#event-shown-id").concat(),
        "order-tail-1",
        "the row opened its event"
    );
    assert!(
        browser
            .attr("#event-trace", "href")
            .is_none_or(|href| href.starts_with("http://127.0.0.1:16686/trace/")),
        "the trace link goes to --jaeger-ui-url"
    );
    snap(&browser, "event");

    // Live numbers, and this node.
    browser.goto(&format!("{}/#/numbers", node.url));
    browser.wait_until("the numbers show", Duration::from_secs(10), |b| {
        b.exists("#numbers .vrow[data-name=\"e2e/orders\"]")
    });
    snap(&browser, "numbers");
    browser.goto(&format!("{}/#/nodes", node.url));
    browser.wait_until("the node shows", Duration::from_secs(10), |b| {
        b.exists("#nodes [data-node=\"knactor-0\"]")
    });

    // The parked payments: re-drive the first one, the subscriber being back.
    failing.store(false, Ordering::SeqCst);
    browser.goto(&format!("{}/#/parked/e2e/default", node.url));
    browser.wait_until("the parked events show", Duration::from_secs(10), |b| {
        b.exists(&format!("tr.parked-event[data-id=\"{parked_id}\"]"))
    });
    let preview = browser
        .texts(&format!("tr.parked-event[data-id=\"{parked_id}\"]"))
        .concat();
    assert!(preview.contains("A-1042"), "the payload preview: {preview}");
    snap(&browser, "parked");
    browser.click(&format!(
        "tr.parked-event[data-id=\"{parked_id}\"] button.redrive-one"
    ));
    browser.wait_until("the re-drive asks first", Duration::from_secs(5), |b| {
        b.exists("#modal-confirm")
    });
    browser.click("#modal-confirm");
    browser.wait_until(
        "the re-drive's result shows",
        Duration::from_secs(10),
        |b| {
            b.texts("#redrive-report")
                .concat()
                .contains("1 event(s) re-driven")
        },
    );
    wait_until(
        "the re-driven payment is delivered",
        Duration::from_secs(10),
        || {
            recorder
                .received("/payments")
                .iter()
                .filter(|r| r.headers.get("ce-id").map(String::as_str) == Some(parked_id))
                .count()
                >= 3
        },
    );
    browser.wait_until(
        "the re-driven event leaves the list",
        Duration::from_secs(10),
        |b| !b.exists(&format!("tr.parked-event[data-id=\"{parked_id}\"]")),
    );

    // A selection: the other two parked payments, ticked and re-driven at once.
    for id in ["payment-failing-2", "payment-tail-3"] {
        browser.wait_until(
            "the other parked payments show",
            Duration::from_secs(10),
            |b| b.exists(&format!("tr.parked-event[data-id=\"{id}\"] input.pick")),
        );
        browser.click(&format!("tr.parked-event[data-id=\"{id}\"] input.pick"));
    }
    browser.wait_until("two are selected", Duration::from_secs(5), |b| {
        b.texts("#redrive-selected").concat().contains("(2)")
    });
    browser.click("#redrive-selected");
    browser.wait_until("the re-drive asks first", Duration::from_secs(5), |b| {
        b.exists("#modal-confirm")
    });
    browser.click("#modal-confirm");
    browser.wait_until(
        "the selection's result shows",
        Duration::from_secs(10),
        |b| {
            b.texts("#redrive-report")
                .concat()
                .contains("2 event(s) re-driven")
        },
    );
    browser.wait_until("nothing is parked any more", Duration::from_secs(10), |b| {
        b.exists("#parked-empty")
    });
}

#[test]
fn without_the_token_the_console_and_the_admin_api_answer_401_and_changes_want_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let node = NodeProcess::start_on(
        &format!(
            "{}{}",
            broker_yaml("{}"),
            trigger_yaml("t", "filter: {}", "http://127.0.0.1:9/", None)
        ),
        &["--admin-token-file", token.to_str().unwrap()],
        Channel::Memory,
    );
    // The page answers 401 (it shows its login form), as does the API.
    let page = http().get(format!("{}/", node.url)).send().unwrap();
    assert_eq!(page.status(), 401);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.text().unwrap().contains("/console.app.js"));
    for path in [
        "/-/status",
        "/-/topology",
        "/-/stats",
        "/-/node",
        "/-/session",
        "/-/brokers/e2e/default/tail",
    ] {
        let answer = http().get(format!("{}{path}", node.url)).send().unwrap();
        assert_eq!(answer.status(), 401, "GET {path} without the token");
    }
    // The scripts are code, not data: served to anyone, with nothing from elsewhere.
    let script = http()
        .get(format!("{}/console.app.js", node.url))
        .send()
        .unwrap();
    assert_eq!(script.status(), 200);

    // A wrong token opens no session; the right one does, as an HttpOnly, SameSite=Strict cookie.
    let login = |token: &str| {
        http()
            .post(format!("{}/-/login", node.url))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .unwrap()
    };
    assert_eq!(login("wrong").status(), 401);
    let garbage = http()
        .post(format!("{}/-/login", node.url))
        .body("token=x")
        .send()
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().unwrap().contains("token"));
    let opened = login(TOKEN);
    assert_eq!(opened.status(), 200);
    let cookie = opened
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session: serde_json::Value = opened.json().unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_string();
    let cookie = cookie.split(';').next().unwrap().to_string();

    // With the cookie: reads work; a change without the CSRF token is refused, with it it runs.
    let status = http()
        .get(format!("{}/-/status", node.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(status.status(), 200);
    assert_eq!(
        http()
            .get(format!("{}/", node.url))
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .status(),
        200
    );
    let redrive = format!("{}/-/brokers/e2e/default/parked/redrive", node.url);
    let refused = http()
        .post(&redrive)
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("CSRF"));
    let forged = http()
        .post(&redrive)
        .header("cookie", &cookie)
        .header("x-knactor-csrf", "made-up")
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403);
    let allowed = http()
        .post(&redrive)
        .header("cookie", &cookie)
        .header("x-knactor-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(allowed.status(), 200, "{}", allowed.text().unwrap());
    // A bad selection is a 400 with the reason.
    let bad = http()
        .post(&redrive)
        .header("cookie", &cookie)
        .header("x-knactor-csrf", &csrf)
        .body("{\"events\": 3}")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("partition"));

    // Logging out ends the session.
    let out = http()
        .post(format!("{}/-/logout", node.url))
        .header("cookie", &cookie)
        .header("x-knactor-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = http()
        .get(format!("{}/-/status", node.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[test]
fn the_tail_serves_a_bounded_number_of_clients() {
    let node = NodeProcess::start_on(&broker_yaml("{}"), &[], Channel::Memory);
    let url = format!("{}/-/brokers/e2e/default/tail", node.url);
    // Each follower holds its stream open; the ninth is refused, saying why.
    let mut open = Vec::new();
    for _ in 0..knactor_actors::tail::DEFAULT_MAX_FOLLOWERS {
        let response = http().get(&url).send().unwrap();
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let refused = http().get(&url).send().unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.text().unwrap().contains("close one"));
    // Closing one frees its place (the node finds out when its keep-alive writes fail).
    open.pop();
    wait_until("a place is free again", Duration::from_secs(30), || {
        http().get(&url).send().is_ok_and(|r| r.status() == 200)
    });
    let unknown = http()
        .get(format!("{}/-/brokers/e2e/nope/tail", node.url))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[test]
fn a_thousand_triggers_stay_usable() {
    let recorder = Recorder::start();
    let mut config = broker_yaml("{}");
    for n in 0..1000 {
        config.push_str(&trigger_yaml(
            &format!("t-{n:04}"),
            &format!("filter: {{attributes: {{type: type-{n}}}}}"),
            &recorder.at(&format!("/t{}", n % 50)),
            None,
        ));
    }
    // No token, on loopback: the console opens without a login, as the admin API does.
    let node = NodeProcess::start_on(&config, &[], Channel::Memory);
    wait_until("every trigger runs", Duration::from_secs(60), || {
        node.status()["brokers"][0]["triggers"]
            .as_array()
            .is_some_and(|triggers| triggers.len() == 1000)
    });
    for (path, what) in [("/-/topology", "topology"), ("/-/stats", "stats")] {
        let began = Instant::now();
        let body = http()
            .get(format!("{}{path}", node.url))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        eprintln!(
            "console: GET {path} of 1000 triggers: {} KiB in {:?}",
            body.len() / 1024,
            began.elapsed()
        );
        assert!(!body.is_empty(), "{what}");
    }

    let browser = Browser::start(1400, 860);
    let began = Instant::now();
    browser.goto(&format!("{}/#/topology", node.url));
    browser.wait_until("the topology is drawn", Duration::from_secs(20), |b| {
        b.texts("#topology-summary")
            .concat()
            .contains("1000 trigger(s)")
    });
    eprintln!(
        "console: the topology of 1000 triggers drawn {:?} after the page was asked for",
        began.elapsed()
    );
    // The graph is grouped by broker and draws a bounded number of triggers; the search finds any.
    let drawn = browser.texts("#graph g.node.trigger").len();
    assert!(drawn <= 25, "{drawn} triggers drawn");
    assert!(browser.exists("#graph g.node.more"));
    browser.type_into("#topology-search", "t-0999");
    browser.wait_until(
        "the search finds the last trigger",
        Duration::from_secs(5),
        |b| {
            b.exists("#graph g.node.trigger[data-name=\"e2e/t-0999\"]")
                && b.texts("#graph g.node.trigger").len() == 1
        },
    );

    // The numbers draw only the rows in view, and scroll to the last one.
    browser.goto(&format!("{}/#/numbers", node.url));
    browser.wait_until("the numbers show", Duration::from_secs(20), |b| {
        b.exists("#numbers .vrow[data-name=\"e2e/t-0000\"]")
    });
    let rows = browser.texts("#numbers .vrow[data-name]").len();
    assert!(rows < 60, "{rows} rows drawn for 1001");
    let began = Instant::now();
    browser.eval(
        "const list = document.getElementById('numbers'); list.scrollTop = list.scrollHeight; return null;",
    );
    browser.wait_until(
        "the last trigger's row shows",
        Duration::from_secs(5),
        |b| b.exists("#numbers .vrow[data-name=\"e2e/t-0999\"]"),
    );
    eprintln!(
        "console: scrolled to the last of 1001 rows in {:?}",
        began.elapsed()
    );
}
