//! `knactor run --kubeconfig` against a real kube-apiserver with the chart's CRDs: the resources come
//! from the cluster, the leader writes their status (Ready and its reasons, addresses, finalizers),
//! creates default Brokers for labelled namespaces, keeps source positions in ConfigMaps, and the
//! seed story works end to end with `kubectl apply`; when the leader dies, a second replica takes
//! the Lease and its sources go on from the saved positions. The node runs as the chart's ServiceAccount,
//! with a token the API server issued and the chart's own RBAC rendered by helm: what it needs and
//! the chart does not grant fails here, and an ApiServerSource whose account the chart does not
//! list says knactor may not impersonate it.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use cloudevents::AttributesReader as _;
use knactor_testkit::{Kafka, KubeApiServer};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn jsonpath(kube: &KubeApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let template = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &template]);
    let output = kube.kubectl_with(&args, None);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn condition(kube: &KubeApiServer, what: &[&str], type_: &str) -> (String, String) {
    let status = jsonpath(
        kube,
        what,
        &format!("{{.status.conditions[?(@.type==\"{type_}\")].status}}"),
    );
    let reason = jsonpath(
        kube,
        what,
        &format!("{{.status.conditions[?(@.type==\"{type_}\")].reason}}"),
    );
    (status, reason)
}

/// `kubectl apply` of the seed story's files, the display subscriber pointed at `recorder`'s
/// `/display`.
fn apply_seed(kube: &KubeApiServer, recorder: &Recorder) {
    let mut files: Vec<_> = std::fs::read_dir(repo_path("tests/fixtures/seed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let yaml = std::fs::read_to_string(file)
            .unwrap()
            .replace("http://127.0.0.1:8081/", &recorder.at("/display"));
        kube.apply(&yaml);
    }
}

/// The release namespace the chart's account lives in, as `helm install -n knactor-system`.
const RELEASE_NAMESPACE: &str = "knactor-system";

/// The ServiceAccount the seed's ApiServerSource runs as (`tests/fixtures/seed/00-rbac.yaml`): the
/// chart lets knactor impersonate only the accounts `apiServerSource.serviceAccounts` lists.
const SEED_SOURCE_ACCOUNT: [&str; 2] = [
    "apiServerSource.serviceAccounts[0].namespace=default",
    "apiServerSource.serviceAccounts[0].name=events-sa",
];

/// Installs the chart's ServiceAccount and RBAC (rendered by helm, with the seed's source account
/// listed and `values`) and returns a kubeconfig of that account: a node started with it has the
/// rights an installed knactor has.
fn the_charts_account(kube: &KubeApiServer, values: &[&str]) -> std::path::PathBuf {
    kube.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {RELEASE_NAMESPACE}}}\n"
    ));
    let mut helm = std::process::Command::new(knactor_testkit::tool("helm"));
    helm.args(["template", "knactor"])
        .arg(repo_path("charts/knactor"))
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(["--show-only", "templates/serviceaccount.yaml"])
        .args(["--show-only", "templates/rbac.yaml"]);
    for value in SEED_SOURCE_ACCOUNT.iter().chain(values) {
        helm.args(["--set", value]);
    }
    let output = helm.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    kube.apply(&String::from_utf8(output.stdout).unwrap());
    kube.service_account_kubeconfig(RELEASE_NAMESPACE, "knactor")
}

fn ready_message(kube: &KubeApiServer, what: &[&str]) -> String {
    jsonpath(
        kube,
        what,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    )
}

/// Knative Serving's Service, as far as knactor looks at it (a name in a namespace).
const KNATIVE_SERVICE_CRD: &str =
    "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
metadata: {name: services.serving.knative.dev}\n\
spec:\n  group: serving.knative.dev\n  scope: Namespaced\n\
\x20 names: {kind: Service, plural: services, singular: service, shortNames: [ksvc]}\n\
\x20 versions:\n  - name: v1\n    served: true\n    storage: true\n\
\x20   schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n";

/// A trigger whose subscriber Service does not exist says so, and is Ready once `service` is
/// applied. (Services' names are watched: the first list may take a moment.)
fn waits_for_its_service(kube: &KubeApiServer, trigger: &str, missing: &str, service: &str) {
    wait_until(
        &format!("trigger {trigger} says its subscriber does not exist"),
        MINUTE,
        || {
            condition(kube, &["trigger", trigger], "Ready")
                == ("False".to_string(), "SubscriberResolveFailed".to_string())
        },
    );
    let message = ready_message(kube, &["trigger", trigger]);
    assert!(message.contains(missing), "{message}");
    kube.apply(service);
    wait_until(
        &format!("trigger {trigger} resolves the new Service"),
        MINUTE,
        || condition(kube, &["trigger", trigger], "Ready").0 == "True",
    );
}

#[test]
fn a_cluster_node_runs_the_seed_story_and_writes_status() {
    let kube = KubeApiServer::start_with_crds(&[KNATIVE_SERVICE_CRD]);
    let recorder = Recorder::start();
    apply_seed(&kube, &recorder);
    // Two triggers a user can fix: a broker that does not exist, a subscriber of unknown kind.
    kube.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: orphan, namespace: default}\n\
         spec: {broker: nowhere, subscriber: {uri: 'http://127.0.0.1:9/'}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: odd-subscriber, namespace: default}\n\
         spec: {broker: default, subscriber: {ref: {apiVersion: example.com/v1, kind: Thing, name: x}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: to-a-service, namespace: default}\n\
         spec: {broker: default, subscriber: {ref: {apiVersion: v1, kind: Service, name: event-display}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: to-a-knative-service, namespace: default}\n\
         spec: {broker: default, subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: hello}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: team-x, labels: {knative-eventing-injection: enabled}}\n",
    );
    let account = the_charts_account(&kube, &[]);
    let node = NodeProcess::spawn_cluster(
        Path::new(BIN),
        &account,
        &[
            "--lease-namespace",
            RELEASE_NAMESPACE,
            "--node-id",
            "node-a",
        ],
    );

    wait_until("the broker is Ready with its address", MINUTE, || {
        condition(&kube, &["broker", "default"], "Ready").0 == "True"
    });
    assert_eq!(
        jsonpath(&kube, &["broker", "default"], "{.status.address.url}"),
        format!("{}/default/default", node.url)
    );
    assert_eq!(
        jsonpath(&kube, &["broker", "default"], "{.metadata.finalizers[0]}"),
        "knactor.dev/controller"
    );
    wait_until("the source is Ready", MINUTE, || {
        condition(&kube, &["apiserversource", "k8s-events"], "Ready").0 == "True"
    });
    assert_eq!(
        condition(
            &kube,
            &["apiserversource", "k8s-events"],
            "SufficientPermissions"
        )
        .0,
        "True"
    );
    assert_eq!(
        jsonpath(
            &kube,
            &["apiserversource", "k8s-events"],
            "{.status.sinkUri}"
        ),
        format!("{}/default/default", node.url)
    );
    assert_eq!(
        condition(&kube, &["trigger", "orphan"], "Ready"),
        ("False".to_string(), "BrokerDoesNotExist".to_string())
    );
    assert_eq!(
        condition(&kube, &["trigger", "odd-subscriber"], "Ready"),
        ("False".to_string(), "SubscriberResolveFailed".to_string())
    );
    assert_eq!(
        condition(&kube, &["trigger", "k8s-events-to-display"], "Ready").0,
        "True"
    );
    // A subscriber Service (core, then Knative) that does not exist yet, then does.
    waits_for_its_service(
        &kube,
        "to-a-service",
        "Service default/event-display does not exist",
        "apiVersion: v1\nkind: Service\nmetadata: {name: event-display, namespace: default}\n\
         spec: {ports: [{port: 80}]}\n",
    );
    assert_eq!(
        jsonpath(
            &kube,
            &["trigger", "to-a-service"],
            "{.status.subscriberUri}"
        ),
        // As Knative prints a resolved reference: no slash added.
        "http://event-display.default.svc.cluster.local"
    );
    waits_for_its_service(
        &kube,
        "to-a-knative-service",
        "Knative Service default/hello does not exist",
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello, namespace: default}\n",
    );
    let table = kube.kubectl(&["get", "brokers,triggers,apiserversources,pingsources"]);
    assert!(table.contains("READY") && table.contains("URL"), "{table}");

    // The seed story through the cluster's resources.
    kube.apply(
        &std::fs::read_to_string(repo_path("tests/fixtures/kubelet-started-event.yaml")).unwrap(),
    );
    wait_until("the kubelet's Event reaches the subscriber", MINUTE, || {
        recorder.count("/display") >= 1
    });
    let received = recorder.received("/display");
    let event = received[0].event.as_ref().unwrap();
    assert_eq!(event.ty(), "dev.knative.apiserver.resource.add");
    assert_eq!(event.source().to_string(), kube.url());

    // Default broker for the labelled namespace; positions and the lease in the cluster.
    wait_until("team-x gets its default Broker", MINUTE, || {
        !jsonpath(
            &kube,
            &["broker", "default", "-n", "team-x"],
            "{.metadata.name}",
        )
        .is_empty()
    });
    assert_eq!(
        jsonpath(
            &kube,
            &["lease", "knactor-controller", "-n", RELEASE_NAMESPACE],
            "{.spec.holderIdentity}"
        ),
        "node-a"
    );
    let maps = kube.kubectl(&["get", "configmaps", "-n", RELEASE_NAMESPACE, "-o", "name"]);
    assert!(
        maps.contains("configmap/knactor-state-apiserversource-"),
        "{maps}"
    );

    // A resource that becomes invalid says which field, and loses what it had while valid.
    kube.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: edited, namespace: default}\n",
    );
    wait_until("the edited broker is Ready", MINUTE, || {
        condition(&kube, &["broker", "edited"], "Ready").0 == "True"
    });
    kube.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: edited, namespace: default}\n\
         spec: {delivery: {retry: 3, backoffDelay: soon}}\n---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: bad-schedule, namespace: default}\n\
         spec: {schedule: 'every day', sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}\n",
    );
    for what in [["broker", "edited"], ["pingsource", "bad-schedule"]] {
        wait_until(&format!("{what:?} is InvalidSpec"), MINUTE, || {
            condition(&kube, &what, "Ready") == ("False".to_string(), "InvalidSpec".to_string())
        });
    }
    let message = ready_message(&kube, &["broker", "edited"]);
    assert!(message.contains("backoffDelay"), "{message}");
    let message = ready_message(&kube, &["pingsource", "bad-schedule"]);
    assert!(message.contains("schedule"), "{message}");
    assert_eq!(
        jsonpath(&kube, &["broker", "edited"], "{.status.address.url}"),
        "",
        "an invalid broker has no address"
    );
    assert_eq!(
        jsonpath(&kube, &["broker", "edited"], "{.status.observedGeneration}"),
        jsonpath(&kube, &["broker", "edited"], "{.metadata.generation}"),
    );

    // Deleting: a Broker goes once the node stopped it (its finalizer), a Trigger at once.
    kube.kubectl(&["delete", "trigger", "orphan", "--wait=false"]);
    kube.kubectl(&["delete", "broker", "edited", "--wait=false"]);
    for what in [["trigger", "orphan"], ["broker", "edited"]] {
        wait_until(&format!("{what:?} is gone"), MINUTE, || {
            let output = kube.kubectl_with(&["get", what[0], what[1]], None);
            String::from_utf8_lossy(&output.stderr).contains("NotFound")
        });
    }
    drop(node);
}

/// Knative's Kafka broker configuration as users have it: a Broker of class Kafka whose
/// `spec.config` names `knative-eventing/kafka-broker-config`, which names an auth Secret. The node
/// has no Kafka flags: the ConfigMap says where the cluster is.
fn kafka_broker_config(bootstrap: &str, protocol: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kafka-broker-config, namespace: knative-eventing}}\n\
         data:\n  bootstrap.servers: '{bootstrap}'\n  default.topic.partitions: '3'\n  default.topic.replication.factor: '1'\n  auth.secret.ref.name: kafka-auth\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: kafka-auth, namespace: knative-eventing}}\nstringData: {{protocol: {protocol}}}\n"
    )
}

fn kafka_broker(name: &str, config_map: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{eventing.knative.dev/broker.class: Kafka}}\n\
         spec:\n  config: {{apiVersion: v1, kind: ConfigMap, name: {config_map}, namespace: knative-eventing}}\n"
    )
}

#[test]
fn a_kafka_broker_takes_knatives_configmap_and_secret_from_the_cluster() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let kafka = Kafka::shared();
    let recorder = Recorder::start();
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: knative-eventing}\n");
    kube.apply(&format!(
        "{}{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all-orders, namespace: default}}\n\
         spec: {{broker: orders, subscriber: {{uri: '{}'}}}}\n",
        kafka_broker_config(&kafka.bootstrap, "PLAINTEXT"),
        kafka_broker("orders", "kafka-broker-config"),
        kafka_broker("unconfigured", "no-such-config"),
        recorder.at("/orders"),
    ));
    // A Kafka cluster nothing answers at.
    kube.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kafka-nowhere, namespace: knative-eventing}}\n\
         data: {{bootstrap.servers: '127.0.0.1:9'}}\n{}---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: on-unreachable, namespace: default}}\n\
         spec: {{broker: unreachable, subscriber: {{uri: '{}'}}}}\n",
        kafka_broker("unreachable", "kafka-nowhere"),
        recorder.at("/unreachable"),
    ));
    let account = the_charts_account(&kube, &["rbac.brokerConfigNamespaces={knative-eventing}"]);
    let node = NodeProcess::spawn_cluster(
        Path::new(BIN),
        &account,
        &[
            "--lease-namespace",
            RELEASE_NAMESPACE,
            "--node-id",
            "node-k",
        ],
    );

    let ready = knactor_testkit::poll(MINUTE, || {
        condition(&kube, &["broker", "orders"], "Ready").0 == "True"
    });
    assert!(
        ready,
        "the Kafka broker is not Ready: {}\nnode log:\n{}",
        ready_message(&kube, &["broker", "orders"]),
        node.log()
    );
    assert_eq!(send(&node.broker("default", "orders"), "o1", "order"), 202);
    wait_until("delivery through the topic", MINUTE, || {
        recorder.count("/orders") == 1
    });
    let topics = kafka.topics();
    assert!(
        topics.contains(&("knative-broker-default-orders".to_string(), 3)),
        "the ConfigMap's partitions: {topics:?}"
    );
    assert_eq!(
        condition(&kube, &["broker", "unconfigured"], "Ready"),
        ("False".to_string(), "ChannelConfigInvalid".to_string())
    );
    let message = ready_message(&kube, &["broker", "unconfigured"]);
    assert!(
        message.contains("ConfigMap knative-eventing/no-such-config"),
        "{message}"
    );
    // Ready only once the node takes its events: not while its Kafka cannot be reached.
    wait_until("the unreachable broker says why", MINUTE, || {
        condition(&kube, &["broker", "unreachable"], "IngressReady").0 == "False"
    });
    assert_eq!(
        condition(&kube, &["broker", "unreachable"], "Ready").0,
        "False"
    );
    wait_until("its trigger follows the broker", MINUTE, || {
        condition(&kube, &["trigger", "on-unreachable"], "Ready")
            == ("False".to_string(), "BrokerNotReady".to_string())
    });

    // A change of the Secret reaches the broker: a protocol Kafka does not have makes it not
    // ready, naming the Secret.
    kube.apply(&kafka_broker_config(&kafka.bootstrap, "CARRIER_PIGEON"));
    wait_until("the broker reports its Secret", MINUTE, || {
        ready_message(&kube, &["broker", "orders"]).contains("Secret knative-eventing/kafka-auth")
    });
    assert_eq!(condition(&kube, &["broker", "orders"], "Ready").0, "False");
    drop(node);
}

#[test]
fn knatives_own_samples_apply_unchanged_to_the_crds() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let samples = repo_path("testdata/knative_samples/concrete");
    // The namespaces the samples name, as their users would have them.
    let mut namespaces = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&samples).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut in_metadata = false;
        for line in text.lines() {
            if !line.starts_with(' ') {
                in_metadata = line.starts_with("metadata:");
            } else if let Some(namespace) =
                line.strip_prefix("  namespace: ").filter(|_| in_metadata)
            {
                namespaces.insert(namespace.trim().to_string());
            }
        }
    }
    for namespace in &namespaces {
        kube.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n"
        ));
    }
    // Each of the 54 Brokers, Triggers, ApiServerSources and PingSources from Knative's docs, as
    // they are: the API server checks them against knactor's CRDs (kubectl refuses an unknown field).
    let output = kube.kubectl_with(
        &["apply", "--dry-run=server", "-f", samples.to_str().unwrap()],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Knative samples refused:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let applied = stdout
        .lines()
        .filter(|line| line.contains("(server dry run)"))
        .count();
    assert_eq!(applied, 54, "{stdout}");
    // And a field of the wrong type is refused (the check above can fail). Unknown fields are
    // kept by the CRDs for knactor to refuse: tests/admission.rs.
    let output = kube.kubectl_with(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: default}\n\
             spec: {broker: default, subscriber: {uri: 'http://x/'}, delivery: {retry: many}}\n",
        ),
    );
    assert!(
        !output.status.success(),
        "a string retry count was accepted"
    );
}

#[test]
fn a_second_replica_takes_over_the_lease_and_the_sources_position() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let recorder = Recorder::start();
    apply_seed(&kube, &recorder);
    let account = the_charts_account(&kube, &[]);
    let replica = |id: &str| {
        NodeProcess::spawn_cluster(
            Path::new(BIN),
            &account,
            &["--lease-namespace", RELEASE_NAMESPACE, "--node-id", id],
        )
    };
    let holder = || {
        jsonpath(
            &kube,
            &["lease", "knactor-controller", "-n", RELEASE_NAMESPACE],
            "{.spec.holderIdentity}",
        )
    };
    let mut first = replica("node-a");
    wait_until("node-a holds the Lease", MINUTE, || holder() == "node-a");
    wait_until("the source is Ready", MINUTE, || {
        condition(&kube, &["apiserversource", "k8s-events"], "Ready").0 == "True"
    });
    let second = replica("node-b");
    let kubelet_event =
        std::fs::read_to_string(repo_path("tests/fixtures/kubelet-started-event.yaml")).unwrap();
    let names = || {
        recorder
            .received("/display")
            .iter()
            .map(|r| {
                r.event
                    .as_ref()
                    .unwrap()
                    .extension("name")
                    .map(ToString::to_string)
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    kube.apply(&kubelet_event);
    wait_until("the leader's source sends the first Event", MINUTE, || {
        names().contains(&"busybox.1626008649e617e3".to_string())
    });
    // Give the source a moment to save its position (every few seconds), then kill the leader
    // and make a change while no replica leads.
    std::thread::sleep(Duration::from_secs(3));
    first.kill();
    kube.apply(&kubelet_event.replace("busybox.1626008649e617e3", "while-no-one-leads"));
    wait_until("node-b takes the Lease when it expires", MINUTE, || {
        holder() == "node-b"
    });
    wait_until(
        "node-b's source resumes from the saved position",
        MINUTE,
        || names().contains(&"while-no-one-leads".to_string()),
    );
    let transitions = jsonpath(
        &kube,
        &["lease", "knactor-controller", "-n", RELEASE_NAMESPACE],
        "{.spec.leaseTransitions}",
    );
    assert_eq!(transitions, "1");
    // The new leader writes status: the source is still Ready, its sink the broker.
    assert_eq!(
        condition(&kube, &["apiserversource", "k8s-events"], "Ready").0,
        "True"
    );
    drop(second);
}

/// The singleton sources move with the Lease: a PingSource ticking every second and the seed's
/// ApiServerSource run on one replica at a time; when that replica is killed (SIGKILL) the other
/// takes the Lease once it expires and both sources go on from their saved positions, and when the
/// leader stops (SIGTERM) it gives the Lease up at once. Every schedule point between the first
/// and the last arrives, each as one event (a point is never sent under two ids); the duplicate
/// deliveries a kill can cause (the point sent but not yet saved) are counted and printed.
#[test]
fn singleton_sources_move_with_the_lease_without_missing_or_doubling_a_point() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let recorder = Recorder::start();
    apply_seed(&kube, &recorder);
    kube.apply(&format!(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: every-second, namespace: default}}\n\
         spec:\n  schedule: '@every 1s'\n  sink:\n    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}\n\
         ---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: pings, namespace: default}}\n\
         spec:\n  broker: default\n  filter: {{attributes: {{type: dev.knative.sources.ping}}}}\n  subscriber: {{uri: '{}'}}\n",
        recorder.at("/pings")
    ));
    let account = the_charts_account(&kube, &[]);
    let replica = |id: &str| {
        NodeProcess::spawn_cluster(
            Path::new(BIN),
            &account,
            &["--lease-namespace", RELEASE_NAMESPACE, "--node-id", id],
        )
    };
    let holder = || {
        jsonpath(
            &kube,
            &["lease", "knactor-controller", "-n", RELEASE_NAMESPACE],
            "{.spec.holderIdentity}",
        )
    };
    let kubelet_event =
        std::fs::read_to_string(repo_path("tests/fixtures/kubelet-started-event.yaml")).unwrap();
    let event_named = |name: &str| kubelet_event.replace("busybox.1626008649e617e3", name);
    let names = || {
        recorder
            .received("/display")
            .iter()
            .filter_map(|r| r.event.as_ref()?.extension("name").map(ToString::to_string))
            .collect::<Vec<_>>()
    };

    let mut a = replica("node-a");
    wait_until("node-a holds the Lease", MINUTE, || holder() == "node-a");
    let mut b = replica("node-b");
    wait_until("pings arrive", MINUTE, || recorder.count("/pings") >= 3);
    kube.apply(&event_named("before-the-kill"));
    wait_until("the Event arrives", MINUTE, || {
        names().contains(&"before-the-kill".to_string())
    });

    // SIGKILL the leader: node-b leads once the Lease expires, and sends what was missed.
    std::thread::sleep(Duration::from_millis(1_500));
    a.kill();
    kube.apply(&event_named("while-no-one-leads"));
    wait_until("node-b takes the Lease", MINUTE, || holder() == "node-b");
    wait_until(
        "node-b's ApiServerSource sends what was missed",
        MINUTE,
        || names().contains(&"while-no-one-leads".to_string()),
    );
    std::thread::sleep(Duration::from_secs(3));

    // SIGTERM the leader with node-a back: node-b gives the Lease up, node-a leads at once.
    a.restart();
    let handover = std::time::Instant::now();
    b.terminate();
    wait_until("node-a takes the Lease given up", MINUTE, || {
        holder() == "node-a"
    });
    let took = handover.elapsed();
    kube.apply(&event_named("after-the-handover"));
    wait_until("node-a's ApiServerSource sends it", MINUTE, || {
        names().contains(&"after-the-handover".to_string())
    });
    std::thread::sleep(Duration::from_secs(3));
    a.terminate();

    // Every point between the first and the last, each under one id.
    let pings = recorder.received("/pings");
    let mut ids_of_point: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for ping in &pings {
        let event = ping.event.as_ref().expect("a CloudEvent");
        let point = event
            .time()
            .expect("a ping has its point as time")
            .timestamp();
        ids_of_point
            .entry(point.to_string())
            .or_default()
            .insert(event.id().to_string());
    }
    let points: Vec<i64> = ids_of_point.keys().map(|p| p.parse().unwrap()).collect();
    let (first, last) = (points[0], points[points.len() - 1]);
    let missed: Vec<i64> = (first..=last).filter(|p| !points.contains(p)).collect();
    let doubled: Vec<&String> = ids_of_point
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(point, _)| point)
        .collect();
    let redelivered = pings.len() - ids_of_point.len();
    println!(
        "pings: {} points from {first} to {last}, {} deliveries ({redelivered} repeated with the same id), missed {missed:?}, doubled {doubled:?}; the Lease changed hands in {took:?} after SIGTERM",
        ids_of_point.len(),
        pings.len()
    );
    assert!(missed.is_empty(), "schedule points missed: {missed:?}");
    assert!(doubled.is_empty(), "points sent under two ids: {doubled:?}");
    assert!(
        redelivered <= 1,
        "{redelivered} points delivered twice (a kill may repeat at most the one point it interrupted)"
    );
    assert!(
        took < Duration::from_secs(10),
        "the Lease took {took:?} to change hands after SIGTERM"
    );
    let transitions = jsonpath(
        &kube,
        &["lease", "knactor-controller", "-n", RELEASE_NAMESPACE],
        "{.spec.leaseTransitions}",
    );
    assert_eq!(transitions, "2");
}

/// The chart lets knactor impersonate only the ServiceAccounts `apiServerSource.serviceAccounts`
/// lists: an ApiServerSource running as another account, one that may read Events itself, is not
/// Ready and its status says knactor may not impersonate that account, while the seed's source,
/// whose account is listed, runs beside it.
#[test]
fn an_apiserversource_whose_account_the_chart_does_not_list_is_not_ready_and_says_why() {
    let kube = KubeApiServer::start_with_crds(&[]);
    let recorder = Recorder::start();
    apply_seed(&kube, &recorder);
    kube.apply(
        r"apiVersion: v1
kind: ServiceAccount
metadata: {name: unlisted-sa, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: unlisted-sa-watches-events}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: event-watcher}
subjects: [{kind: ServiceAccount, name: unlisted-sa, namespace: default}]
---
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {name: unlisted, namespace: default}
spec:
  mode: Resource
  serviceAccountName: unlisted-sa
  resources: [{apiVersion: v1, kind: Event}]
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
",
    );
    let account = the_charts_account(&kube, &[]);
    let node = NodeProcess::spawn_cluster(
        Path::new(BIN),
        &account,
        &[
            "--lease-namespace",
            RELEASE_NAMESPACE,
            "--node-id",
            "node-a",
        ],
    );
    wait_until("the listed account's source is Ready", MINUTE, || {
        condition(&kube, &["apiserversource", "k8s-events"], "Ready").0 == "True"
    });
    let refused = knactor_testkit::poll(MINUTE, || {
        condition(&kube, &["apiserversource", "unlisted"], "Ready").0 == "False"
            && ready_message(&kube, &["apiserversource", "unlisted"]).contains("impersonate")
    });
    let message = ready_message(&kube, &["apiserversource", "unlisted"]);
    assert!(
        refused,
        "the unlisted account's source: {:?} {message}\nnode log:\n{}",
        condition(&kube, &["apiserversource", "unlisted"], "Ready"),
        node.log()
    );
    println!("an ApiServerSource as an unlisted account: {message}");
    assert!(message.contains("unlisted-sa"), "{message}");
}
