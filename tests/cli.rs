//! The command line: display prints Knative's event-display layout, send reports statuses,
//! validate reads Knative's samples, and every error is one line with a non-zero exit.

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
    assert_eq!(text(&sent.stdout).trim(), "202 Accepted");

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
            vec!["parked", "list", "no-slash", "--node", "http://127.0.0.1:9"],
            "is not <namespace>/<broker>",
        ),
        (
            vec!["status", "--node", "http://127.0.0.1:9"],
            "the node did not answer",
        ),
        (vec!["frobnicate"], "error:"),
    ];
    for (args, expected) in cases {
        let output = knactor(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?}");
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
