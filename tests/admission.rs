//! The admission webhook against a real kube-apiserver, configured with the chart's own
//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration (rendered by helm, pointed at
//! the node on loopback with the caBundle of the certificate the node generated): `kubectl apply`
//! refuses every flawed Knative sample with the line `knactor validate` prints for it, admits
//! Knative's samples and stores them defaulted, refuses changes of the immutable fields, and with
//! the node down does what the chart's failurePolicy says. The node serves the chart's generated
//! certificate from files, and a new one once the files change; bad bodies get 400, 405 and 413.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use knactor_testkit::KubeApiServer;
use serde_json::{json, Value};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const CLASS: &str = "eventing.knative.dev/broker.class";
const RELEASE_NAMESPACE: &str = "knactor-system";
const WEBHOOK_HOST: &str = "knactor-webhook.knactor-system.svc";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` of the chart's webhook objects (the Secret with a new CA, the Service, the
/// two configurations), with `values`.
fn chart_webhook(values: &[&str]) -> Vec<serde_yaml::Value> {
    let mut helm = Command::new(knactor_testkit::tool("helm"));
    helm.args(["template", "knactor"])
        .arg(repo_path("charts/knactor"))
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(["--show-only", "templates/webhook.yaml"]);
    for value in values {
        helm.args(["--set", value]);
    }
    let output = helm.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        text(&output.stderr)
    );
    serde_yaml::Deserializer::from_str(&text(&output.stdout))
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .filter(|document: &serde_yaml::Value| !document.is_null())
        .collect()
}

/// The chart's two webhook configurations, calling `url` (the node on loopback) with `ca_bundle`
/// instead of the Service: everything else (rules, scope, failurePolicy, sideEffects) as the
/// chart renders it.
fn webhook_configurations(url: &str, ca_bundle: &str) -> (String, String) {
    let mut yaml = String::new();
    let mut failure_policy = String::new();
    for mut document in chart_webhook(&[]) {
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        if !kind.ends_with("WebhookConfiguration") {
            continue;
        }
        for webhook in document["webhooks"].as_sequence_mut().unwrap() {
            failure_policy = webhook["failurePolicy"].as_str().unwrap().to_string();
            let config = webhook["clientConfig"].as_mapping_mut().unwrap();
            let service = config
                .remove("service")
                .expect("the chart names its Service");
            let path = service["path"].as_str().unwrap().to_string();
            config.insert("url".into(), format!("{url}{path}").into());
            config.insert("caBundle".into(), ca_bundle.into());
        }
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&document).unwrap());
    }
    (yaml, failure_policy)
}

const FLAWED_TRIGGER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: probe, namespace: default}\n\
    spec: {broker: default, filter: {attributes: {Type: x}}, subscriber: {uri: 'http://127.0.0.1:1/'}}\n";

struct Cluster {
    kube: KubeApiServer,
    node: NodeProcess,
    /// The chart's failurePolicy, as configured.
    failure_policy: String,
}

/// An API server whose Knative objects go through the webhook of a node (a generated
/// certificate; its caBundle read from what the node prints).
fn cluster_with_webhook() -> Cluster {
    let kube = KubeApiServer::start_with_crds(&[]);
    let node = NodeProcess::spawn_cluster(
        Path::new(BIN),
        &kube.kubeconfig,
        &["--admission-listen", "127.0.0.1:0"],
    );
    let output = node.output();
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("knactor admission webhook on "))
        .unwrap_or_else(|| panic!("the node says where its webhook is: {output}"));
    let (url, rest) = line.split_once(' ').unwrap();
    let ca_bundle = rest
        .strip_prefix("(generated certificate; caBundle ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the node prints the caBundle: {line}"));
    let (configurations, failure_policy) = webhook_configurations(url, ca_bundle);
    kube.apply(&configurations);
    // The API server takes the configurations in a moment after they are stored.
    wait_until("the API server calls the webhook", MINUTE, || {
        let output = kube.kubectl_with(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(FLAWED_TRIGGER),
        );
        text(&output.stderr).contains("denied the request")
    });
    Cluster {
        kube,
        node,
        failure_policy,
    }
}

fn get(kube: &KubeApiServer, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&kube.kubectl(&args)).unwrap()
}

#[test]
fn the_flawed_samples_are_refused_by_kubectl_apply_with_the_line_knactor_validate_prints() {
    let cluster = cluster_with_webhook();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("testdata/knative_samples/flawed"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for file in &files {
        let validate = Command::new(BIN)
            .args(["validate", file.to_str().unwrap()])
            .output()
            .unwrap();
        let printed = text(&validate.stdout);
        let line = printed
            .lines()
            .find(|line| line.starts_with("refused: "))
            .unwrap_or_else(|| panic!("knactor validate refuses {}: {printed}", file.display()));
        // What follows the file's name is the reason.
        let (_, reason) = line.split_once(".yaml: ").unwrap();
        let apply = cluster
            .kube
            .kubectl_with(&["apply", "-f", file.to_str().unwrap()], None);
        let stderr = text(&apply.stderr);
        assert!(!apply.status.success(), "{} was admitted", file.display());
        assert!(
            stderr.contains(&format!("denied the request: {reason}\n")),
            "{}: kubectl said\n{stderr}\nknactor validate said\n{reason}",
            file.display()
        );
    }
    // Nothing of them was stored.
    let stored = cluster.kube.kubectl(&[
        "get",
        "brokers,triggers,apiserversources,pingsources",
        "-A",
        "-o",
        "name",
    ]);
    assert_eq!(stored.trim(), "", "{stored}");
    drop(cluster.node);
}

/// The namespaces the samples name, created as their users would have them.
fn sample_namespaces(files: &[PathBuf]) -> BTreeSet<String> {
    let mut namespaces = BTreeSet::new();
    for file in files {
        let document: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        if let Some(namespace) = document["metadata"]["namespace"].as_str() {
            namespaces.insert(namespace.to_string());
        }
    }
    namespaces
}

/// The cluster-wide default delivery of the test's config-br-defaults.
fn default_delivery() -> Value {
    json!({"retry": 4, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"})
}

/// What the webhook defaults in `object`, given what `sample` (the file) said.
fn assert_defaulted(object: &Value, sample: &serde_yaml::Value, what: &str) {
    let sample: Value = serde_json::to_value(sample).unwrap();
    let spec = &object["spec"];
    let namespace = object["metadata"]["namespace"].as_str().unwrap();
    let ref_namespace = |destination: &Value, field: &str| {
        if destination["ref"].is_object() {
            let expected = sample["spec"]
                .pointer(&format!("/{field}/ref/namespace"))
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            assert_eq!(
                destination["ref"]["namespace"], expected,
                "{what}: {field}.ref.namespace in {object}"
            );
        }
    };
    match object["kind"].as_str().unwrap() {
        "Broker" => {
            let class = object["metadata"]["annotations"][CLASS].as_str();
            let asked = sample["metadata"]["annotations"][CLASS]
                .as_str()
                .unwrap_or("MTChannelBasedBroker");
            assert_eq!(class, Some(asked), "{what}: the class in {object}");
            if sample["spec"]["delivery"].is_null() {
                assert_eq!(spec["delivery"], default_delivery(), "{what}: {object}");
            } else {
                ref_namespace(
                    &spec["delivery"]["deadLetterSink"],
                    "delivery/deadLetterSink",
                );
            }
        }
        "Trigger" => {
            assert!(spec["filter"].is_object(), "{what}: no filter in {object}");
            if let Some(broker) = spec["broker"].as_str() {
                assert_eq!(
                    object["metadata"]["labels"]["eventing.knative.dev/broker"], broker,
                    "{what}: {object}"
                );
            }
            ref_namespace(&spec["subscriber"], "subscriber");
            ref_namespace(
                &spec["delivery"]["deadLetterSink"],
                "delivery/deadLetterSink",
            );
        }
        _ => ref_namespace(&spec["sink"], "sink"),
    }
}

#[test]
fn knatives_samples_are_admitted_and_stored_with_knatives_defaults() {
    let cluster = cluster_with_webhook();
    let kube = &cluster.kube;
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("testdata/knative_samples/concrete"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for namespace in sample_namespaces(&files)
        .iter()
        .map(String::as_str)
        .chain(["knative-eventing", "team-kafka"])
    {
        kube.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n"
        ));
    }
    // Knative's config-br-defaults: a cluster-wide delivery, and a namespace whose Brokers are
    // Kafka Brokers with Knative's Kafka ConfigMap.
    kube.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-br-defaults, namespace: knative-eventing}}\n\
         data:\n  default-br-config: |\n    clusterDefault:\n      delivery: {}\n    namespaceDefaults:\n      team-kafka:\n        brokerClass: Kafka\n        apiVersion: v1\n        kind: ConfigMap\n        name: kafka-broker-config\n        namespace: knative-eventing\n",
        default_delivery()
    ));
    // Every sample: defaulted as a dry run (several samples share a name, so before any is
    // stored), then stored once per name and read back.
    let mut first_of_each_name = Vec::new();
    let mut names = BTreeSet::new();
    for file in &files {
        let sample: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let path = file.to_str().unwrap();
        let dry = kube.kubectl_with(
            &["create", "--dry-run=server", "-o", "json", "-f", path],
            None,
        );
        assert!(
            dry.status.success(),
            "{path} was refused: {}",
            text(&dry.stderr)
        );
        let object: Value = serde_json::from_slice(&dry.stdout).unwrap();
        assert_defaulted(&object, &sample, path);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let key = (
            object["kind"].as_str().unwrap().to_string(),
            namespace,
            object["metadata"]["name"].as_str().unwrap().to_string(),
        );
        if names.insert(key.clone()) {
            first_of_each_name.push((key, sample, path.to_string()));
        }
    }
    assert_eq!(files.len(), 54);
    assert!(
        first_of_each_name.len() > 30,
        "{}",
        first_of_each_name.len()
    );
    for (_, _, path) in &first_of_each_name {
        kube.kubectl(&["apply", "-f", path]);
    }
    for ((kind, namespace, name), sample, path) in &first_of_each_name {
        let object = get(kube, &[&kind.to_lowercase(), name, "-n", namespace]);
        assert_defaulted(&object, sample, path);
    }

    // config-br-defaults' namespace entry: the class, spec.config and the cluster's delivery.
    kube.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: orders, namespace: team-kafka}\n",
    );
    let broker = get(kube, &["broker", "orders", "-n", "team-kafka"]);
    assert_eq!(
        broker["metadata"]["annotations"][CLASS], "Kafka",
        "{broker}"
    );
    assert_eq!(
        broker["spec"]["config"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config", "namespace": "knative-eventing"})
    );
    assert_eq!(broker["spec"]["delivery"], default_delivery());
    drop(cluster.node);
}

#[test]
fn the_immutable_fields_are_refused_on_update_naming_the_field() {
    let cluster = cluster_with_webhook();
    let kube = &cluster.kube;
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n");
    let broker = |class: &str, config: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: team-a\n  annotations: {{{CLASS}: {class}}}\n\
             spec:\n  config: {{apiVersion: v1, kind: ConfigMap, name: {config}}}\n  delivery: {{retry: 2}}\n"
        )
    };
    let trigger = |broker: &str, kind: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t, namespace: team-a}}\n\
             spec: {{broker: {broker}, filter: {{attributes: {{kind: {kind}}}}}, subscriber: {{uri: 'http://127.0.0.1:1/'}}}}\n"
        )
    };
    kube.apply(&broker("MTChannelBasedBroker", "channel"));
    kube.apply(&trigger("b", "Pod"));
    let refused = |yaml: &str, expected: &str| {
        let output = kube.kubectl_with(&["apply", "-f", "-"], Some(yaml));
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "admitted:\n{yaml}");
        assert!(
            stderr.contains(expected),
            "{stderr}\n(expected {expected:?})"
        );
    };
    refused(
        &broker("Kafka", "channel"),
        "denied the request: Broker team-a/b: metadata.annotations[eventing.knative.dev/broker.class]: immutable: the Broker's class is \"MTChannelBasedBroker\" (asked: \"Kafka\")",
    );
    refused(
        &broker("MTChannelBasedBroker", "other"),
        "denied the request: Broker team-a/b: spec.config: immutable",
    );
    refused(
        &trigger("elsewhere", "Pod"),
        "denied the request: Trigger team-a/t: spec.broker: immutable: the Trigger's broker is \"b\" (asked: \"elsewhere\")",
    );
    // The rest changes as usual, and what was refused did not.
    kube.apply(&trigger("b", "Service"));
    kube.apply(&broker("MTChannelBasedBroker", "channel").replace("retry: 2", "retry: 5"));
    let stored = get(kube, &["trigger", "t", "-n", "team-a"]);
    assert_eq!(stored["spec"]["broker"], "b");
    assert_eq!(stored["spec"]["filter"]["attributes"]["kind"], "Service");
    let stored = get(kube, &["broker", "b", "-n", "team-a"]);
    assert_eq!(
        stored["metadata"]["annotations"][CLASS],
        "MTChannelBasedBroker"
    );
    assert_eq!(stored["spec"]["config"]["name"], "channel");
    assert_eq!(stored["spec"]["delivery"]["retry"], 5);
    // The controller still finishes a Broker (its finalizer goes with an update of the object).
    kube.kubectl(&["delete", "broker", "b", "-n", "team-a", "--timeout=60s"]);
    drop(cluster.node);
}

#[test]
fn with_the_node_down_apply_does_what_the_failure_policy_says_and_delete_works() {
    let mut cluster = cluster_with_webhook();
    let kube = &cluster.kube;
    let trigger = |name: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{broker: default, subscriber: {{uri: 'http://127.0.0.1:1/'}}}}\n"
        )
    };
    kube.apply(&trigger("before"));
    cluster.node.kill();
    let output = kube.kubectl_with(&["apply", "-f", "-"], Some(&trigger("while-down")));
    let stderr = text(&output.stderr);
    match cluster.failure_policy.as_str() {
        // Fail: nothing gets in unjudged; the error says the webhook could not be called.
        "Fail" => {
            assert!(!output.status.success(), "admitted with the node down");
            assert!(stderr.contains("failed calling webhook"), "{stderr}");
            let invalid = kube.kubectl_with(&["apply", "-f", "-"], Some(FLAWED_TRIGGER));
            assert!(!invalid.status.success());
        }
        // Ignore: apply works, unjudged and undefaulted.
        "Ignore" => {
            assert!(output.status.success(), "{stderr}");
            let stored = get(kube, &["trigger", "while-down"]);
            assert!(stored["spec"]["filter"].is_null(), "{stored}");
        }
        other => panic!("the chart's failurePolicy is {other}"),
    }
    // Deletes never go to the webhook.
    kube.kubectl(&["delete", "trigger", "before", "--timeout=30s"]);
}

/// A client of the node's webhook on `port` that trusts `ca` (PEM) only, and reaches it under the
/// chart's Service name.
fn client(ca: &[u8], port: u16) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .resolve(WEBHOOK_HOST, ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The chart's generated Secret: (ca.crt, tls.crt, tls.key), PEM.
fn chart_certificate() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use base64::Engine as _;
    let secret = chart_webhook(&[])
        .into_iter()
        .find(|document| document["kind"] == "Secret")
        .expect("the chart generates the webhook's Secret");
    let field = |key: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap()
    };
    (field("ca.crt"), field("tls.crt"), field("tls.key"))
}

#[test]
fn the_charts_certificate_is_served_and_a_renewed_one_without_a_restart() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (first_ca, first_cert, first_key) = chart_certificate();
    std::fs::write(&cert, &first_cert).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let node = NodeProcess::spawn_cluster(
        Path::new(BIN),
        &kube.kubeconfig,
        &[
            "--admission-listen",
            "127.0.0.1:0",
            "--admission-cert",
            cert.to_str().unwrap(),
            "--admission-key",
            key.to_str().unwrap(),
        ],
    );
    let output = node.output();
    let port: u16 = output
        .lines()
        .find_map(|line| line.strip_prefix("knactor admission webhook on https://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{output}"))
        .trim()
        .parse()
        .unwrap();
    let url = |path: &str| format!("https://{WEBHOOK_HOST}:{port}{path}");
    let first = client(&first_ca, port);

    // Bodies that are not reviews: 400 with the reason; other methods 405; too large 413.
    let bad = first
        .post(url("/validate"))
        .body("{\"apiVersion\": 3}")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let reason = bad.text().unwrap();
    assert!(
        reason.starts_with("not an admission.k8s.io/v1 AdmissionReview: apiVersion: invalid type"),
        "{reason}"
    );
    assert_eq!(first.get(url("/mutate")).send().unwrap().status(), 405);
    let huge = vec![b' '; 5 * 1024 * 1024];
    assert_eq!(
        first
            .post(url("/mutate"))
            .body(huge)
            .send()
            .unwrap()
            .status(),
        413
    );
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "eventing.knative.dev", "version": "v1", "kind": "Trigger"},
        "namespace": "default", "operation": "CREATE",
        "object": {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                   "metadata": {"name": "t", "namespace": "default"},
                   "spec": {"broker": "default", "subscriber": {"uri": "http://s/"}}}}});
    let answer: Value = first
        .post(url("/mutate"))
        .json(&review)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    // A renewal (here: another render of the chart, with another CA) replaces both files.
    let (second_ca, second_cert, second_key) = chart_certificate();
    assert_ne!(first_ca, second_ca);
    let second = client(&second_ca, port);
    assert!(second.post(url("/validate")).json(&review).send().is_err());
    for (path, bytes) in [(&key, &second_key), (&cert, &second_cert)] {
        let temporary = dir.path().join(".next");
        std::fs::write(&temporary, bytes).unwrap();
        std::fs::rename(&temporary, path).unwrap();
    }
    wait_until("the node serves the renewed certificate", MINUTE, || {
        second
            .post(url("/validate"))
            .json(&review)
            .send()
            .is_ok_and(|response| response.status() == 200)
    });
    assert!(
        client(&first_ca, port)
            .post(url("/validate"))
            .json(&review)
            .send()
            .is_err(),
        "the old certificate is still served"
    );
    assert!(
        node.log().contains("serves its new certificate"),
        "{}",
        node.log()
    );
}
