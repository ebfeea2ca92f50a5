//! Knative's `config-br-defaults` is read: Brokers without a delivery, class or config take them
//! from it (a namespace's entry before the cluster's), and Knative's other ConfigMaps are reported
//! as skipped, never as loaded.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn br_defaults(dls: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-br-defaults, namespace: knative-eventing}}\n\
         data:\n  default-br-config: |\n    clusterDefault:\n      brokerClass: MTChannelBasedBroker\n      delivery:\n        retry: 5\n\
         \x20   namespaceDefaults:\n      e2e:\n        delivery:\n          retry: 0\n          deadLetterSink: {{uri: '{dls}'}}\n"
    )
}

#[test]
fn a_broker_without_a_delivery_takes_its_namespaces_default() {
    let recorder = Recorder::start();
    recorder.on("/sub", |_, _| Reply::status(500));
    let config = format!(
        "{}{}{}",
        broker_yaml("null"),
        trigger_yaml("t", "filter: {}", &recorder.at("/sub"), None),
        br_defaults(&recorder.at("/dls")),
    );
    let node = NodeProcess::start(&config, &[]);
    assert_eq!(send(&node.broker("e2e", "default"), "d1", "t"), 202);
    wait_until(
        "the namespace's dead-letter sink gets it",
        Duration::from_secs(10),
        || recorder.count("/dls") == 1,
    );
    assert_eq!(
        recorder.count("/sub"),
        1,
        "retry: 0 from the namespace's entry"
    );
}

#[test]
fn knatives_other_config_maps_are_skipped_and_a_wrong_default_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("knative.yaml"),
        format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-logging, namespace: knative-eventing}}\ndata: {{zap-logger-config: '{{}}'}}\n",
            br_defaults("http://dls.example/")
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["validate", dir.path().to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let skipped = report["skipped"].to_string();
    assert!(skipped.contains("config-logging"), "{report}");
    assert!(
        !skipped.contains("ConfigMap knative-eventing/config-br-defaults:"),
        "{report}"
    );
    assert!(
        report["loaded"].to_string().contains("config-br-defaults"),
        "{report}"
    );

    std::fs::write(
        dir.path().join("knative.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-br-defaults, namespace: knative-eventing}\n\
         data:\n  default-br-config: |\n    clusterDefault:\n      delivery: {backoffDelay: soon}\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["validate", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("data.default-br-config.clusterDefault.delivery.backoffDelay"),
        "{said}"
    );
}
