//! ApiServerSource against a real kube-apiserver (started by `scripts/kube-up.sh`): the seed story
//! (a kubelet's Event reaches `knactor display` through a broker and a trigger), updates and
//! deletes, selectors and reference mode, namespace selectors, permissions, a restart in the
//! middle of a burst, and changes the API server compacted away while the node was down. The node reads the YAML from `--config` and watches the cluster through
//! `--kubeconfig`.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use cloudevents::AttributesReader as _;
use knactor_testkit::KubeApiServer;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The seed fixtures as one configuration, the display subscriber pointed at `display`.
fn seed_config(display: &str) -> String {
    let mut files: Vec<_> = std::fs::read_dir(repo_path("tests/fixtures/seed"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
        .replace("http://127.0.0.1:8081/", display)
}

/// Waits until the node's source `namespace/name` watches (its start-up is over).
fn wait_source_ready(node: &NodeProcess, namespace: &str, name: &str) {
    wait_until("the ApiServerSource watches", MINUTE, || {
        node.status()["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|source| {
                source["namespace"] == namespace
                    && source["name"] == name
                    && source["ready"] == true
            })
    });
}

fn source_status(node: &NodeProcess, name: &str) -> serde_json::Value {
    node.status()["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|source| source["name"] == name)
        .cloned()
        .unwrap_or_default()
}

fn extension(event: &cloudevents::Event, name: &str) -> String {
    event
        .extension(name)
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn the_seed_story_shows_a_kubelet_event_in_display_and_follows_its_updates_and_deletion() {
    let kube = KubeApiServer::start();
    kube.apply(&std::fs::read_to_string(repo_path("tests/fixtures/seed/00-rbac.yaml")).unwrap());
    let display = Display::start();
    let recorder = Recorder::start();
    // The seed, plus a second trigger to a recorder for exact checks.
    let config = format!(
        "{}---\n{}",
        seed_config(&display.url),
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: record-all, namespace: default}\n\
         spec: {broker: default, subscriber: {uri: 'RECORDER'}}\n"
            .replace("RECORDER", &recorder.at("/all"))
    );
    let node = NodeProcess::start(
        &config,
        &["--kubeconfig", kube.kubeconfig.to_str().unwrap()],
    );
    wait_source_ready(&node, "default", "k8s-events");
    assert_eq!(
        source_status(&node, "k8s-events")["sufficientPermissions"],
        true
    );

    kube.apply(
        &std::fs::read_to_string(repo_path("tests/fixtures/kubelet-started-event.yaml")).unwrap(),
    );
    wait_until("display prints the add event", MINUTE, || {
        display
            .output()
            .contains("type: dev.knative.apiserver.resource.add")
    });
    let printed = display.output();
    for expected in [
        "☁️  cloudevents.Event",
        "type: dev.knative.apiserver.resource.add",
        &format!("source: {}", kube.url()),
        "subject: /apis/v1/namespaces/default/events/busybox.1626008649e617e3",
        "datacontenttype: application/json",
        "kind: Event",
        "name: busybox.1626008649e617e3",
        "namespace: default",
        "\"message\": \"Started container\"",
        "\"reason\": \"Started\"",
    ] {
        assert!(
            printed.contains(expected),
            "display lacks {expected:?}:\n{printed}"
        );
    }

    kube.kubectl(&[
        "patch",
        "event",
        "busybox.1626008649e617e3",
        "--type",
        "merge",
        "-p",
        r#"{"count": 2}"#,
    ]);
    kube.kubectl(&["delete", "event", "busybox.1626008649e617e3"]);
    wait_until("the update and the delete arrive", MINUTE, || {
        recorder.count("/all") >= 3
    });
    let received = recorder.received("/all");
    let types: Vec<String> = received
        .iter()
        .map(|r| r.event.as_ref().unwrap().ty().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "dev.knative.apiserver.resource.add",
            "dev.knative.apiserver.resource.update",
            "dev.knative.apiserver.resource.delete"
        ]
    );
    let update = received[1].event.as_ref().unwrap();
    assert_eq!(data_json(update)["count"], 2);
    assert_eq!(extension(update, "apiversion"), "v1");
    assert_eq!(extension(update, "kind"), "Event");
    let ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.event.as_ref().unwrap().id().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "every change has its own id");
}

#[test]
fn reference_mode_label_and_namespace_selectors_owner_and_overrides() {
    let kube = KubeApiServer::start();
    kube.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: watcher, namespace: default}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cm-watcher}\n\
         rules: [{apiGroups: [''], resources: [configmaps, namespaces], verbs: [get, list, watch]}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: cm-watcher}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-watcher}\n\
         subjects: [{kind: ServiceAccount, name: watcher, namespace: default}]\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: prod-a, labels: {env: prod}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: dev-a, labels: {env: dev}}\n",
    );
    let recorder = Recorder::start();
    let source = |name: &str, spec: &str, path: &str| {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{serviceAccountName: watcher, sink: {{uri: '{}'}}, {spec}}}\n---\n",
            recorder.at(path)
        )
    };
    let config = [
        // Reference mode (the default), only ConfigMaps labelled app=web, in its own namespace.
        source(
            "web-configs",
            "resources: [{apiVersion: v1, kind: ConfigMap, selector: {matchLabels: {app: web}}}], \
             ceOverrides: {extensions: {team: web}}",
            "/web",
        ),
        // Resource mode, every namespace labelled env=prod.
        source(
            "prod-configs",
            "mode: Resource, resources: [{apiVersion: v1, kind: ConfigMap}], \
             namespaceSelector: {matchLabels: {env: prod}}",
            "/prod",
        ),
        // Only ConfigMaps owned by a Deployment.
        source(
            "owned-configs",
            "mode: Resource, resources: [{apiVersion: v1, kind: ConfigMap}], \
             owner: {apiVersion: apps/v1, kind: Deployment}",
            "/owned",
        ),
    ]
    .concat();
    let node = NodeProcess::start(
        &config,
        &["--kubeconfig", kube.kubeconfig.to_str().unwrap()],
    );
    for name in ["web-configs", "prod-configs", "owned-configs"] {
        wait_source_ready(&node, "default", name);
    }
    assert_eq!(
        source_status(&node, "prod-configs")["namespaces"],
        serde_json::json!(["prod-a"])
    );
    let config_map = |namespace: &str, name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}{extra}}}\ndata: {{a: b}}\n---\n"
        )
    };
    kube.apply(
        &[
            config_map("default", "web-1", ", labels: {app: web}"),
            config_map("default", "db-1", ", labels: {app: db}"),
            config_map("prod-a", "prod-1", ""),
            config_map("dev-a", "dev-1", ""),
            config_map(
                "default",
                "owned-1",
                ", ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: 6a0c6f1e-0000-4000-8000-000000000001}]",
            ),
        ]
        .concat(),
    );
    wait_until("each source sent its change", MINUTE, || {
        recorder.count("/web") >= 1 && recorder.count("/prod") >= 1 && recorder.count("/owned") >= 1
    });
    thread::sleep(Duration::from_millis(500));

    let web = recorder.received("/web");
    assert_eq!(web.len(), 1, "only the app=web ConfigMap");
    let web = web[0].event.as_ref().unwrap();
    assert_eq!(web.ty(), "dev.knative.apiserver.ref.add");
    assert_eq!(
        data_json(web),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "web-1", "namespace": "default"})
    );
    assert_eq!(extension(web, "team"), "web");
    assert_eq!(
        web.subject(),
        Some("/apis/v1/namespaces/default/configmaps/web-1")
    );

    let prod = recorder.received("/prod");
    let names: Vec<String> = prod
        .iter()
        .map(|r| extension(r.event.as_ref().unwrap(), "name"))
        .collect();
    assert_eq!(names, ["prod-1"], "only the env=prod namespace");
    let prod = prod[0].event.as_ref().unwrap();
    assert_eq!(prod.ty(), "dev.knative.apiserver.resource.add");
    assert_eq!(data_json(prod)["data"]["a"], "b");

    let owned: Vec<String> = recorder
        .received("/owned")
        .iter()
        .map(|r| extension(r.event.as_ref().unwrap(), "name"))
        .collect();
    assert_eq!(owned, ["owned-1"]);
}

#[test]
fn a_service_account_without_permissions_is_reported_not_run() {
    let kube = KubeApiServer::start();
    kube.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: nobody, namespace: default}\n",
    );
    let recorder = Recorder::start();
    let config = format!(
        "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: blind, namespace: default}}\n\
         spec: {{serviceAccountName: nobody, resources: [{{apiVersion: v1, kind: Pod}}], sink: {{uri: '{}'}}}}\n",
        recorder.at("/blind")
    );
    let node = NodeProcess::start(
        &config,
        &["--kubeconfig", kube.kubeconfig.to_str().unwrap()],
    );
    wait_until("the missing permissions are reported", MINUTE, || {
        source_status(&node, "blind")["sufficientPermissions"] == false
    });
    let status = source_status(&node, "blind");
    let problem = status["permissionProblem"].as_str().unwrap();
    assert!(
        problem.contains("system:serviceaccount:default:nobody")
            && problem.contains("list pods in default"),
        "{problem}"
    );
    assert_eq!(status["ready"], false);
    let cli = node.cli(&["status"]);
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        printed.contains("source ApiServerSource default/blind: "),
        "{printed}"
    );
}

#[test]
fn a_restart_in_the_middle_of_a_burst_misses_no_change() {
    const BURST: usize = 300;
    let kube = KubeApiServer::start();
    kube.apply(&std::fs::read_to_string(repo_path("tests/fixtures/seed/00-rbac.yaml")).unwrap());
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: burst}\n");
    let recorder = Recorder::start();
    let config = format!(
        "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: burst, namespace: burst}}\n\
         spec: {{mode: Resource, serviceAccountName: events-sa, resources: [{{apiVersion: v1, kind: Event}}], \
         sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: burst}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all, namespace: burst}}\n\
         spec: {{broker: default, subscriber: {{uri: '{}'}}}}\n",
        recorder.at("/burst")
    );
    kube.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: events-sa, namespace: burst}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: burst-events}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: event-watcher}\n\
         subjects: [{kind: ServiceAccount, name: events-sa, namespace: burst}]\n",
    );
    // On Kafka, one node reads every partition: in a consumer group, the restarted node would
    // wait for its killed self to be evicted (the session timeout, 10 s), which is not what this
    // test is about.
    let mut node = NodeProcess::start(
        &config,
        &[
            "--kubeconfig",
            kube.kubeconfig.to_str().unwrap(),
            "--kafka-partition-assignment",
            "all",
        ],
    );
    wait_source_ready(&node, "burst", "burst");

    // One kubectl apply creates the whole burst while the node sends it.
    let events: String = (0..BURST)
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Event\nmetadata: {{name: burst-{n}, namespace: burst}}\n\
                 involvedObject: {{kind: Pod, name: p-{n}, namespace: burst}}\nreason: Started\nmessage: m{n}\ntype: Normal\n---\n"
            )
        })
        .collect();
    let creator = {
        let kubeconfig = kube.kubeconfig.clone();
        let cache = kube.dir().join("kubectl-cache-burst");
        thread::spawn(move || {
            let mut child = Command::new(knactor_testkit::tool("kubectl"))
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("--cache-dir")
                .arg(cache)
                .args(["apply", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(events.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        })
    };
    wait_until("part of the burst arrived", MINUTE, || {
        recorder.count("/burst") >= 30
    });
    node.kill();
    let before_restart = recorder.count("/burst");
    creator.join().unwrap();
    node.restart();
    let distinct = || {
        recorder
            .received("/burst")
            .iter()
            .map(|r| extension(r.event.as_ref().unwrap(), "name"))
            .collect::<BTreeSet<String>>()
            .len()
    };
    let deadline = std::time::Instant::now() + 3 * MINUTE;
    while distinct() < BURST {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {BURST} changes arrived ({before_restart} before the SIGKILL); node log:\n{}",
            distinct(),
            node.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let received = recorder.received("/burst");
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for recorded in &received {
        let event = recorded.event.as_ref().unwrap();
        assert_eq!(event.ty(), "dev.knative.apiserver.resource.add");
        *per_name.entry(extension(event, "name")).or_default() += 1;
    }
    let duplicates: usize = per_name.values().map(|n| n - 1).sum();
    println!(
        "burst of {BURST}: {before_restart} delivered before SIGKILL, 0 missed, {duplicates} delivered twice after the restart"
    );
    assert_eq!(per_name.len(), BURST);
    assert!(before_restart < BURST, "the node was killed mid-burst");
}

#[test]
fn changes_the_api_server_no_longer_holds_are_reported_as_skipped() {
    // etcd compacted every 2 s and no watch cache: a position a few seconds old is gone, as a
    // real cluster's is after its compaction interval (5 minutes by default).
    let kube = KubeApiServer::start_with(&["--etcd-compaction-interval=2s", "--watch-cache=false"]);
    kube.apply(&std::fs::read_to_string(repo_path("tests/fixtures/seed/00-rbac.yaml")).unwrap());
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: gone}\n");
    kube.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: events-sa, namespace: gone}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: gone-events}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: event-watcher}\n\
         subjects: [{kind: ServiceAccount, name: events-sa, namespace: gone}]\n",
    );
    let recorder = Recorder::start();
    let config = format!(
        "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: gone, namespace: gone}}\n\
         spec: {{mode: Resource, serviceAccountName: events-sa, resources: [{{apiVersion: v1, kind: Event}}], \
         sink: {{uri: '{}'}}}}\n",
        recorder.at("/gone")
    );
    let event = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: gone}}\n\
             involvedObject: {{kind: Pod, name: p, namespace: gone}}\nreason: Started\nmessage: m\ntype: Normal\n"
        )
    };
    let mut node = NodeProcess::start(
        &config,
        &["--kubeconfig", kube.kubeconfig.to_str().unwrap()],
    );
    wait_source_ready(&node, "gone", "gone");
    kube.apply(&event("before"));
    wait_until("the first change arrives", MINUTE, || {
        recorder.count("/gone") == 1
    });
    assert!(source_status(&node, "gone")["skipped"].is_null());

    // Down while changes happen and the API server compacts them away.
    node.kill();
    kube.apply(&event("while-down"));
    thread::sleep(Duration::from_secs(7));
    node.restart();
    wait_source_ready(&node, "gone", "gone");
    wait_until("the gap is reported", MINUTE, || {
        source_status(&node, "gone")["skipped"].is_string()
    });
    let skipped = source_status(&node, "gone")["skipped"].to_string();
    assert!(skipped.contains("410 Gone"), "{skipped}");
    // It goes on from now: later changes arrive.
    kube.apply(&event("after"));
    wait_until("a change after the gap arrives", MINUTE, || {
        recorder
            .received("/gone")
            .iter()
            .any(|r| extension(r.event.as_ref().unwrap(), "name") == "after")
    });
    let status = node.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("skipped:"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn the_2019_articles_v1alpha1_yaml_runs_as_written() {
    let kube = KubeApiServer::start();
    kube.apply(&std::fs::read_to_string(repo_path("tests/fixtures/seed/00-rbac.yaml")).unwrap());
    let display = Display::start();
    // Broker, source and trigger as Knative's docs of 2019 wrote them: v1alpha1, the sink an
    // object reference, the filter sourceAndType.
    let config = format!(
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: Broker\nmetadata: {{name: default, namespace: default}}\n---\n\
         apiVersion: sources.eventing.knative.dev/v1alpha1\nkind: ApiServerSource\nmetadata: {{name: testevents, namespace: default}}\n\
         spec:\n  serviceAccountName: events-sa\n  mode: Resource\n  resources:\n  - apiVersion: v1\n    kind: Event\n\
         \x20 sink:\n    apiVersion: eventing.knative.dev/v1alpha1\n    kind: Broker\n    name: default\n---\n\
         apiVersion: eventing.knative.dev/v1alpha1\nkind: Trigger\nmetadata: {{name: testevents-trigger, namespace: default}}\n\
         spec:\n  filter:\n    sourceAndType:\n      type: dev.knative.apiserver.resource.add\n      source: ''\n\
         \x20 subscriber: {{uri: '{}'}}\n",
        display.url
    );
    let node = NodeProcess::start(
        &config,
        &["--kubeconfig", kube.kubeconfig.to_str().unwrap()],
    );
    wait_source_ready(&node, "default", "testevents");
    kube.apply(
        &std::fs::read_to_string(repo_path("tests/fixtures/kubelet-started-event.yaml")).unwrap(),
    );
    wait_until("display prints the add event", MINUTE, || {
        display
            .output()
            .contains("\"message\": \"Started container\"")
    });
    assert!(display
        .output()
        .contains("type: dev.knative.apiserver.resource.add"));
    // The node said what it read them as.
    let log = node.log();
    assert!(
        log.contains("read as sources.knative.dev/v1 ApiServerSource"),
        "{log}"
    );
}
