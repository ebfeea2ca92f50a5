//! The command line: display prints Knative's event-display layout, send reports statuses and
//! ids, validate reads Knative's samples, the reporting commands speak JSON and YAML in the
//! schema of docs/cli.md, the generated completions and man pages are current, the quickstart
//! runs on the ports given, and every error is one line with a non-zero exit.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::thread;
use std::time::Duration;

use support::*;

fn knactor(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn display_prints_what_knatives_event_display_prints() {
    let display = Display::start();
    let url = display.url.clone();
    let sent = knactor(&[
        "send",
        &url,
        "--type",
        "dev.knactor.test",
        "--source",
        "/cli",
        "--id",
        "evt-1",
        "--subject",
        "greeting",
        "--extension",
        "team=a",
        "--data",
        r#"{"hello":"world","n":1}"#,
    ]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    assert_eq!(text(&sent.stdout), "202 Accepted\nid: evt-1\n");

    wait_until(
        "display prints the event's data",
        Duration::from_secs(10),
        || display.output().contains("Data,"),
    );
    thread::sleep(Duration::from_millis(300));
    let output = display.output();
    let expected_start = "☁️  cloudevents.Event\nValidation: valid\nContext Attributes,\n  specversion: 1.0\n  type: dev.knactor.test\n  source: /cli\n  subject: greeting\n  id: evt-1\n  time: ";
    assert!(output.starts_with(expected_start), "{output}");
    assert!(output.contains("  datacontenttype: application/json\nExtensions,\n  team: a\nData,\n  {\n    \"hello\": \"world\",\n    \"n\": 1\n  }\n"), "{output}");
}

#[test]
fn send_reports_the_status_codes_it_got() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("t", "filter: {}", &recorder.at("/t"), None)
    );
    let node = NodeProcess::start(&config, &[]);
    let output = knactor(&[
        "send",
        &node.broker("e2e", "default"),
        "--type",
        "t",
        "--source",
        "/s",
        "--count",
        "50",
    ]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(stdout.contains("202 Accepted × 50"), "{stdout}");
    wait_until("50 deliveries", Duration::from_secs(10), || {
        recorder.count("/t") == 50
    });

    let missing = knactor(&[
        "send",
        &node.broker("e2e", "nope"),
        "--type",
        "t",
        "--source",
        "/s",
    ]);
    assert!(!missing.status.success());
    assert!(text(&missing.stdout).contains("404 Not Found"));
    assert!(text(&missing.stdout).contains("broker e2e/nope does not exist"));

    let unreachable = knactor(&[
        "send",
        "http://127.0.0.1:9/x",
        "--type",
        "t",
        "--source",
        "/s",
    ]);
    assert!(!unreachable.status.success());
    assert!(text(&unreachable.stdout).starts_with("error: "));
}

#[test]
fn validate_accepts_knatives_samples_and_refuses_the_flawed_ones() {
    // Each sample is its own configuration (several reuse the same names).
    let mut checked = 0;
    for folder in [
        "testdata/knative_samples/concrete",
        "testdata/knative_samples/rekt_rendered",
    ] {
        for entry in std::fs::read_dir(repo_path(folder)).unwrap() {
            let path = entry.unwrap().path();
            let output = knactor(&["validate", path.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                text(&output.stdout)
            );
            assert!(text(&output.stdout).contains("1 loaded, 0 refused"));
            checked += 1;
        }
    }
    assert_eq!(checked, 83);
    let flawed = repo_path("testdata/knative_samples/flawed");
    let output = knactor(&["validate", flawed.to_str().unwrap()]);
    assert!(!output.status.success());
    let stdout = text(&output.stdout);
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("refused: "))
        .collect();
    assert_eq!(refused.len(), 5, "{stdout}");
    for line in refused {
        assert!(
            line.contains(".yaml: ") && line.contains(" default/") && line.contains("spec"),
            "{line}"
        );
    }

    let two_dialects =
        repo_path("testdata/knative_samples/concrete/Trigger__triggers_README__5.yaml");
    let strict = knactor(&["validate", "--strict", two_dialects.to_str().unwrap()]);
    assert!(!strict.status.success());
    assert!(text(&strict.stdout).contains("sets 2 dialects (exact, suffix)"));
}

#[test]
fn errors_are_one_line_and_a_non_zero_exit() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--config", "/nonexistent/knactor"],
            "config path /nonexistent/knactor does not exist",
        ),
        (
            vec!["send", "not a url", "--type", "t", "--source", "s"],
            "error:",
        ),
        (
            vec![
                "send",
                "http://127.0.0.1:9/",
                "--type",
                "t",
                "--source",
                "s",
                "--data",
                "{oops",
            ],
            "--data is not valid JSON",
        ),
        (
            vec!["run", "--config", ".", "--listen", "nonsense"],
            "error:",
        ),
        (
            vec!["parked", "list", "a/b/c", "--node", "http://127.0.0.1:9"],
            "is not a broker: give <broker> (with -n <namespace>) or <namespace>/<broker>",
        ),
        (
            vec!["parked", "list", "-n", "team-a", "team-b/default"],
            "\"team-b/default\" is in namespace \"team-b\" but -n says \"team-a\"",
        ),
        // URLs without their scheme: the flag, the value and the URL to write, never the URL
        // parser's "relative URL without a base".
        (
            vec!["send", "127.0.0.1:8080/default/default", "--type", "t", "--source", "s"],
            "'127.0.0.1:8080/default/default' for '<URL>': no http:// or https:// scheme: write \
             http://127.0.0.1:8080/default/default",
        ),
        (
            vec!["status", "--node", "localhost:9"],
            "'localhost:9' for '--node <NODE>': no http:// or https:// scheme: write http://localhost:9",
        ),
        (
            vec!["trace", "x", "--node", "not a url"],
            "'not a url' for '--node <NODE>': not an http:// or https:// URL: expected a URL such \
             as http://127.0.0.1:8080",
        ),
        (
            vec!["status", "--node", "http://127.0.0.1:9"],
            "the node did not answer",
        ),
        (
            vec!["run", "--config", ".", "--otlp-endpoint", "127.0.0.1:4317"],
            "'127.0.0.1:4317' for '--otlp-endpoint <URL>': not a usable OTLP endpoint: no http:// \
             or https:// scheme: write http://127.0.0.1:4317",
        ),
        // An empty source: the flag and the form, not the SDK's "Invalid value setting attribute
        // 'source' with uriref type" once the event is built.
        (
            vec!["send", "http://127.0.0.1:9/", "--type", "t", "--source", ""],
            "invalid value '' for '--source <SOURCE>': a CloudEvent's source is a non-empty URI \
             reference, such as /my/app or https://example.com/app",
        ),
        (
            vec!["send", "http://127.0.0.1:9/", "--type", "", "--source", "/s"],
            "invalid value '' for '--type <TYPE>': a CloudEvent's type is a non-empty string",
        ),
        (vec!["frobnicate"], "error:"),
    ];
    for (args, expected) in cases {
        let output = knactor(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?}");
        assert!(
            !stderr.contains("relative URL") && !stderr.contains("uriref"),
            "{args:?}: {stderr:?}"
        );
    }
}

#[test]
fn a_node_on_the_quickstart_example_delivers_to_a_display() {
    // The quickstart configuration itself, with the display at a port of the test's choosing.
    let recorder = Recorder::start();
    let dir = tempfile::tempdir().unwrap();
    for file in ["broker.yaml", "trigger.yaml"] {
        std::fs::copy(
            repo_path("examples/quickstart").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let node_config = std::fs::read_to_string(repo_path("examples/quickstart/node.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:8081", &recorder.at("/"));
    std::fs::write(dir.path().join("node.yaml"), node_config).unwrap();
    let config = [
        dir.path().join("broker.yaml"),
        dir.path().join("trigger.yaml"),
        dir.path().join("node.yaml"),
    ]
    .iter()
    .map(|path| std::fs::read_to_string(path).unwrap())
    .collect::<Vec<_>>()
    .join("---\n");
    let node = NodeProcess::start(&config, &[]);
    let output = knactor(&[
        "send",
        &node.broker("default", "default"),
        "--type",
        "dev.knactor.quickstart",
        "--source",
        "/readme",
    ]);
    assert!(output.status.success());
    wait_until("the display got it", Duration::from_secs(10), || {
        recorder.count("/") == 1
    });
}

#[test]
fn with_admin_listen_the_admin_api_leaves_the_ingress_address() {
    let recorder = Recorder::start();
    let config = format!(
        "{}{}",
        broker_yaml("{}"),
        trigger_yaml("all", "filter: {}", &recorder.at("/all"), None)
    );
    let admin = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let admin_flag = admin.to_string();
    let node = NodeProcess::start(&config, &["--admin-listen", &admin_flag]);
    let admin_url = format!("http://{admin}");
    assert_eq!(send(&node.broker("e2e", "default"), "a1", "x"), 202);
    wait_until("delivered", Duration::from_secs(10), || {
        recorder.count("/all") == 1
    });

    // The ingress address: events, probes and metrics, but no admin API.
    let refused = http().get(format!("{}/-/status", node.url)).send().unwrap();
    assert_eq!(refused.status(), 404);
    assert!(refused.text().unwrap().contains("--admin-listen"));
    let redrive = http()
        .post(format!("{}/-/brokers/e2e/default/parked/redrive", node.url))
        .send()
        .unwrap();
    assert_eq!(redrive.status(), 404);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = http().get(format!("{}{path}", node.url)).send().unwrap();
        assert_eq!(answer.status(), 200, "{path} on the ingress address");
    }

    // The admin address: the admin API, and the CLI pointed at it.
    let status: serde_json::Value = http()
        .get(format!("{admin_url}/-/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["brokers"][0]["name"], "default", "{status}");
    let trail = knactor(&["trace", "a1", "--node", &admin_url]);
    assert!(trail.status.success(), "{}", text(&trail.stderr));
    assert!(
        text(&trail.stdout).contains("delivered"),
        "{}",
        text(&trail.stdout)
    );
    let parked = knactor(&["parked", "list", "e2e/default", "--node", &admin_url]);
    assert!(parked.status.success(), "{}", text(&parked.stderr));
}

/// `knactor ARGS` whose standard output is one JSON or YAML document.
fn document(args: &[&str], node: &NodeProcess) -> serde_json::Value {
    let output = node.cli(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    if args.contains(&"yaml") {
        serde_yaml::from_str(&stdout).unwrap_or_else(|error| panic!("{args:?}: {error}: {stdout}"))
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{args:?}: {error}: {stdout}"))
    }
}

/// Every field name of `value` (objects inside arrays included) is named in docs/cli.md.
fn assert_documented(what: &str, value: &serde_json::Value) {
    let docs = std::fs::read_to_string(repo_path("docs/cli.md")).unwrap();
    let mut missing = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, inner) in fields {
                    if !docs.contains(&format!("`{name}`")) {
                        missing.push(name.clone());
                    }
                    // A parked event is the CloudEvent itself: its attributes are CloudEvents'.
                    if name != "event" {
                        stack.push(inner);
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "{what}: docs/cli.md does not name {missing:?}"
    );
}

#[test]
fn status_parked_trace_and_validate_print_json_and_yaml_as_documented() {
    let recorder = Recorder::start();
    recorder.on("/refuses", |_, _| Reply::status(400));
    let config = format!(
        "{}{}",
        broker_yaml("{retry: 0}"),
        trigger_yaml("refuses", "filter: {}", &recorder.at("/refuses"), None)
    );
    let node = NodeProcess::start(&config, &[]);
    assert_eq!(send(&node.broker("e2e", "default"), "p1", "t"), 202);
    wait_until("the event is parked", Duration::from_secs(10), || {
        node.status()["brokers"][0]["name"] == "default"
            && document(&["parked", "list", "e2e/default", "-o", "json"], &node)["total"] == 1
    });

    // status: the admin API's answer, as JSON and as YAML.
    let status = document(&["status", "-o", "json"], &node);
    let api = node.status();
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&status), keys(&api));
    assert_eq!(status["brokers"][0]["namespace"], "e2e", "{status}");
    assert_eq!(
        status["brokers"][0]["triggers"][0], "e2e/refuses",
        "{status}"
    );
    assert_documented("status", &status);
    let yaml = document(&["status", "-o", "yaml"], &node);
    assert_eq!(keys(&yaml), keys(&api));
    assert_eq!(yaml["role"], "all");

    // parked: -n as kubectl's, or <namespace>/<broker>; JSON, YAML, and --json.
    let parked = document(
        &["parked", "list", "-n", "e2e", "default", "-o", "json"],
        &node,
    );
    assert_eq!(parked["total"], 1, "{parked}");
    assert_eq!(parked["events"][0]["event"]["id"], "p1", "{parked}");
    assert_eq!(parked["events"][0]["trigger"], "e2e/refuses", "{parked}");
    assert_documented("parked list", &parked);
    assert_eq!(
        document(
            &[
                "parked",
                "list",
                "default",
                "--namespace",
                "e2e",
                "-o",
                "yaml"
            ],
            &node
        ),
        parked
    );
    assert_eq!(
        document(&["parked", "list", "e2e/default", "--json"], &node),
        parked
    );
    let listed = node.cli(&["parked", "list", "-n", "e2e", "default"]);
    assert!(
        text(&listed.stdout).starts_with("1 parked\n"),
        "{}",
        text(&listed.stdout)
    );
    let redriven = document(
        &["parked", "redrive", "-n", "e2e", "default", "-o", "json"],
        &node,
    );
    assert_eq!(
        redriven["redriven"].as_u64().unwrap() + redriven["kept"].as_u64().unwrap(),
        1
    );
    assert_documented("parked redrive", &redriven);

    // trace: the journal's answer.
    let trail = document(&["trace", "p1", "-o", "json"], &node);
    assert_eq!(trail["id"], "p1", "{trail}");
    assert!(trail["hops"].as_array().unwrap().len() >= 3, "{trail}");
    assert_documented("trace", &trail);
    assert_eq!(document(&["trace", "p1", "-o", "yaml"], &node)["id"], "p1");
    assert_eq!(document(&["trace", "p1", "--json"], &node)["id"], "p1");

    // validate: refusals with their file, resource and fields; non-zero when any is refused.
    let flawed = repo_path("testdata/knative_samples/flawed");
    let output = knactor(&["validate", flawed.to_str().unwrap(), "-o", "json"]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["counts"]["refused"], 5, "{report}");
    for refusal in report["refused"].as_array().unwrap() {
        assert!(
            refusal["file"].as_str().unwrap().ends_with(".yaml"),
            "{refusal}"
        );
        assert!(
            refusal["resource"].as_str().unwrap().contains(" default/"),
            "{refusal}"
        );
        assert!(
            refusal["errors"][0]["path"]
                .as_str()
                .unwrap()
                .starts_with("spec"),
            "{refusal}"
        );
    }
    assert_documented("validate", &report);
    let quickstart = repo_path("examples/quickstart");
    let output = knactor(&["validate", quickstart.to_str().unwrap(), "-o", "yaml"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let report: serde_json::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["counts"]["loaded"], 3, "{report}");
    assert!(
        report["loaded"].as_array().unwrap().iter().any(|resource| {
            resource["kind"] == "Broker"
                && resource["namespace"] == "default"
                && resource["name"] == "default"
        }),
        "{report}"
    );
    assert_documented("validate", &report);
}

fn send_to(url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "send",
        url,
        "--type",
        "dev.knactor.test",
        "--source",
        "/cli",
    ];
    args.extend_from_slice(extra);
    knactor(&args)
}

#[test]
fn send_prints_the_ids_it_generated() {
    let recorder = Recorder::start();

    let one = send_to(&recorder.at("/one"), &[]);
    assert!(one.status.success(), "{}", text(&one.stderr));
    let stdout = text(&one.stdout);
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in {stdout:?}"));
    wait_until("it arrives", Duration::from_secs(10), || {
        recorder.count("/one") == 1
    });
    assert_eq!(recorder.ids("/one"), [id]);

    let many = send_to(&recorder.at("/many"), &["--id", "batch", "--count", "5"]);
    assert!(many.status.success(), "{}", text(&many.stderr));
    let stdout = text(&many.stdout);
    assert!(stdout.contains("202 Accepted × 5\n"), "{stdout}");
    assert!(
        stdout.contains("ids: first batch-1, last batch-5, 5 in all\n"),
        "{stdout}"
    );

    // -o json: one object per event and line, as the answers come.
    let json = send_to(&recorder.at("/json"), &["--count", "4", "-o", "json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let lines: Vec<serde_json::Value> = text(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{}", text(&json.stdout));
    let mut printed: Vec<String> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["status"], 202, "{line}");
            assert!(line["error"].is_null(), "{line}");
            line["id"].as_str().unwrap().to_string()
        })
        .collect();
    wait_until("they arrive", Duration::from_secs(10), || {
        recorder.count("/json") == 4
    });
    let mut received = recorder.ids("/json");
    printed.sort();
    received.sort();
    assert_eq!(printed, received);

    // A refusal is a line too, with the status and the body that says why.
    recorder.on("/refuses", |_, _| Reply::status(400).with_body("no thanks"));
    let refused = send_to(&recorder.at("/refuses"), &["--id", "r", "-o", "json"]);
    assert!(!refused.status.success());
    let line: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"id": "r", "status": 400, "error": "no thanks"})
    );
}

#[test]
fn send_takes_data_from_a_file_and_of_any_content_type() {
    let recorder = Recorder::start();
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("greeting.txt");
    std::fs::write(&text_file, "hello, world\n").unwrap();
    let at_text = format!("@{}", text_file.display());
    let sent = send_to(
        &recorder.at("/text"),
        &["--data", &at_text, "--content-type", "text/plain"],
    );
    assert!(sent.status.success(), "{}", text(&sent.stderr));

    let bytes_file = dir.path().join("blob.bin");
    std::fs::write(&bytes_file, [0u8, 159, 146, 150, 255]).unwrap();
    let at_bytes = format!("@{}", bytes_file.display());
    let sent = send_to(
        &recorder.at("/bytes"),
        &[
            "--data",
            &at_bytes,
            "--content-type",
            "application/octet-stream",
            "--mode",
            "structured",
        ],
    );
    assert!(sent.status.success(), "{}", text(&sent.stderr));

    let json_file = dir.path().join("order.json");
    std::fs::write(&json_file, r#"{"order": 7}"#).unwrap();
    let at_json = format!("@{}", json_file.display());
    let sent = send_to(&recorder.at("/json"), &["--data", &at_json]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));

    wait_until("all three arrive", Duration::from_secs(10), || {
        recorder.count("/text") == 1
            && recorder.count("/bytes") == 1
            && recorder.count("/json") == 1
    });
    let received = &recorder.received("/text")[0];
    assert_eq!(received.body, b"hello, world\n");
    assert_eq!(received.headers["content-type"], "text/plain");
    let event = recorder.received("/bytes")[0].event.clone().unwrap();
    use cloudevents::AttributesReader as _;
    assert_eq!(event.datacontenttype(), Some("application/octet-stream"));
    let data: Vec<u8> = match event.data().unwrap() {
        cloudevents::Data::Binary(bytes) => bytes.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(data, [0u8, 159, 146, 150, 255]);
    let event = recorder.received("/json")[0].event.clone().unwrap();
    assert_eq!(data_json(&event), serde_json::json!({"order": 7}));

    // Data that is not JSON needs its type; a file that cannot be read is named.
    let not_json = send_to(&recorder.at("/x"), &["--data", "hello"]);
    assert!(!not_json.status.success());
    let stderr = text(&not_json.stderr);
    assert!(
        stderr.contains("--data is not valid JSON") && stderr.contains("--content-type"),
        "{stderr}"
    );
    let missing = send_to(&recorder.at("/x"), &["--data", "@/nonexistent/data.json"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("--data @/nonexistent/data.json: cannot read the file"),
        "{}",
        text(&missing.stderr)
    );
    assert_eq!(recorder.count("/x"), 0);
}

#[test]
fn send_on_a_non_terminal_prints_a_one_line_summary_every_interval() {
    let recorder = Recorder::start();
    recorder.on("/slow", |_, n| {
        let reply = if n % 3 == 0 {
            Reply::status(503)
        } else {
            Reply::accepted()
        };
        reply.after(Duration::from_millis(80))
    });
    // Standard error is a pipe here, as in CI or `kubectl logs`.
    let output = send_to(
        &recorder.at("/slow"),
        &[
            "--count",
            "9",
            "--concurrency",
            "1",
            "--progress-interval",
            "150ms",
        ],
    );
    assert!(!output.status.success(), "three of the nine were refused");
    let stderr = text(&output.stderr);
    let summaries: Vec<&str> = stderr.lines().collect();
    assert!(summaries.len() >= 2, "{stderr}");
    for line in &summaries {
        assert!(
            line.starts_with("sent ") && line.contains("/9 in ") && line.contains(": accepted "),
            "{line}"
        );
    }
    assert!(
        summaries
            .iter()
            .any(|line| line.contains(", refused 1 (503 ×1), no answer 0")
                || line.contains(", refused 2 (503 ×2), no answer 0")),
        "{stderr}"
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("202 Accepted × 6\n503 Service Unavailable × 3\n"),
        "{stdout}"
    );
}

#[test]
fn completions_and_man_pages_are_generated_and_the_committed_ones_are_current() {
    for (shell, marker) in [
        ("bash", "complete -F _knactor"),
        ("zsh", "#compdef knactor"),
        ("fish", "complete -c knactor"),
    ] {
        let output = knactor(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.contains(marker), "{shell}");
        assert!(
            script.contains("parked") && script.contains("output"),
            "{shell}"
        );
    }
    let page = knactor(&["man"]);
    assert!(
        text(&page.stdout).contains(".TH knactor 1"),
        "{}",
        text(&page.stdout)
    );

    for (command, dir) in [("completions", "docs/completions"), ("man", "docs/man")] {
        let committed = repo_path(dir);
        let check = knactor(&[command, "--check", committed.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "{dir} is stale: run `cargo run -- {command} --out {dir}`: {}",
            text(&check.stderr)
        );
    }

    // --out writes what --check wants; an edited or a left-over file is stale.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    assert!(knactor(&["completions", "--out", out]).status.success());
    assert!(knactor(&["completions", "--check", out]).status.success());
    std::fs::write(dir.path().join("knactor.bash"), "# edited\n").unwrap();
    std::fs::write(dir.path().join("knactor-gone.1"), "").unwrap();
    let stale = knactor(&["completions", "--check", out]);
    assert!(!stale.status.success());
    assert!(
        text(&stale.stderr)
            .contains("is stale (knactor-gone.1, knactor.bash): run `knactor completions --out"),
        "{}",
        text(&stale.stderr)
    );
}

#[test]
fn run_dry_run_reports_the_resources_it_would_refuse() {
    let flawed = repo_path("testdata/knative_samples/flawed");
    let output = knactor(&["run", "--config", flawed.to_str().unwrap(), "--dry-run"]);
    assert!(!output.status.success());
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("knactor run: the flags are valid; nothing was started\n"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("refused: "))
            .count(),
        5,
        "{stdout}"
    );
    assert!(
        stdout.contains("knactor run would refuse 5 resource(s)"),
        "{stdout}"
    );

    let quickstart = repo_path("examples/quickstart");
    let output = knactor(&["run", "--config", quickstart.to_str().unwrap(), "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("3 loaded, 0 refused"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_split_role_takes_kafka_annotated_brokers_and_names_the_ones_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let annotated = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: orders\n  namespace: e2e\n  annotations: {eventing.knative.dev/broker.class: Kafka}\n";
    std::fs::write(dir.path().join("orders.yaml"), annotated).unwrap();
    let config = dir.path().to_str().unwrap();
    // No --channel kafka: the broker says Kafka itself.
    let output = knactor(&["run", "--role", "ingress", "--config", config, "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let plain = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: plain, namespace: e2e}\n";
    std::fs::write(dir.path().join("plain.yaml"), plain).unwrap();
    let output = knactor(&["run", "--role", "dispatch", "--config", config, "--dry-run"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: --role dispatch: broker e2e/plain has no eventing.knative.dev/broker.class \
             annotation, so it would take --default-broker-class MTChannelBasedBroker, the memory \
             channel"
        ) && stderr.contains("add --channel kafka, or annotate it with the class Kafka")
            && !stderr.contains("e2e/orders"),
        "{stderr}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_quickstart_runs_a_prebuilt_binary_on_the_ports_given() {
    let (port, sink_port) = (free_port(), free_port());
    let output = Command::new("bash")
        .arg(repo_path("examples/quickstart/run.sh"))
        .env("KNACTOR_BIN", BIN)
        .env("PORT", port.to_string())
        .env("SINK_PORT", sink_port.to_string())
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(!stdout.contains("building knactor"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "sending one event to http://127.0.0.1:{port}/default/default"
        )),
        "{stdout}"
    );
    // The sink prints the event to the same terminal as it arrives, which may be between
    // `knactor send`'s two lines.
    assert!(stdout.contains("202 Accepted\n"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line.starts_with("id: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("  type: dev.knactor.quickstart\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{sink_port}/")) && stdout.contains("delivered"),
        "{stdout}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port().to_string();
    let output = Command::new("bash")
        .arg(repo_path("examples/quickstart/run.sh"))
        .env("KNACTOR_BIN", BIN)
        .env("PORT", &busy)
        .env("SINK_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains(&format!("is port {busy} free? PORT chooses another")),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_license_is_the_apache_license_2_0_in_full() {
    let license = std::fs::read_to_string(repo_path("LICENSE")).unwrap();
    for part in [
        "Apache License\n                           Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ] {
        assert!(license.contains(part), "LICENSE lacks {part:?}");
    }
    assert_eq!(license.lines().count(), 202);
    let manifest = std::fs::read_to_string(repo_path("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
}
