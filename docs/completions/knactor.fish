# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_knactor_global_optspecs
    string join \n h/help V/version
end

function __fish_knactor_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_knactor_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_knactor_using_subcommand
    set -l cmd (__fish_knactor_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c knactor -n "__fish_knactor_needs_command" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_needs_command" -s V -l version -d 'Print version'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "display" -d 'Run an event-display sink that prints every CloudEvent it receives, like Knative\'s'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "send" -d 'Send CloudEvents to a URL (a broker ingress, a subscriber...)'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "validate" -d 'Check resource files without running them; exits non-zero when one is refused'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "status" -d 'Show what a running node runs, and what it does not and why'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "parked" -d 'List or re-drive a broker\'s parked events on a running node'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "trace" -d 'Where did my event go: the hops and outcomes a running node recorded for one event'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "crdgen" -d 'Write the custom resource definitions (generated from the Rust types), or check a copy'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish), or write or check them in a directory'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "man" -d 'Print the manual page, or write or check one page per command in a directory'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "run" -d 'Run a node: the broker ingress and the broker, trigger and subscriber actors'
complete -c knactor -n "__fish_knactor_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knactor -n "__fish_knactor_using_subcommand display" -l listen -d 'Address to receive CloudEvents on (any path)' -r
complete -c knactor -n "__fish_knactor_using_subcommand display" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_using_subcommand send" -l type -d 'The events\' `type`, e.g. com.example.order.created' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l source -d 'The events\' `source`, a URI reference, e.g. /my/app or https://example.com/app' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l id -d 'The event id (a fresh UUID per event by default; with --count, "<id>-<n>")' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l data -d 'The events\' data: the text itself, or @FILE to read it from a file (@- reads standard input). JSON unless --content-type says otherwise' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l content-type -d 'The data\'s media type (`datacontenttype`), e.g. text/plain or application/octet-stream; data of a JSON type (application/json, *+json) must be valid JSON' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l subject -d 'The events\' `subject` (non-empty when given)' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l extension -d 'An extension attribute, name=value; repeatable' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l count -d 'How many events to send' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l concurrency -d 'Requests in flight at once' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -l mode -d 'HTTP content mode' -r -f -a "binary\t''
structured\t''"
complete -c knactor -n "__fish_knactor_using_subcommand send" -s o -l output -d 'Output format: text, or json (one object per event and line: id, status, error)' -r -f -a "text\t'The statuses, their counts and the ids (the first and the last of several)'
json\t'One JSON object per event and line, as each answer arrives: {"id", "status", "error"}'"
complete -c knactor -n "__fish_knactor_using_subcommand send" -l progress-interval -d 'When standard error is not a terminal, print a one-line summary (sent, accepted, refused by status) this often while sending (0s: none)' -r
complete -c knactor -n "__fish_knactor_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand validate" -l config-max-file-bytes -d 'A configuration file larger than this is refused (only its own resources)' -r
complete -c knactor -n "__fish_knactor_using_subcommand validate" -l config-read-timeout -d 'How long reading one configuration file may take before it is refused (a hung mount, a FIFO swapped in)' -r
complete -c knactor -n "__fish_knactor_using_subcommand validate" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand validate" -l strict -d 'Refuse exactly what Knative\'s webhook refuses'
complete -c knactor -n "__fish_knactor_using_subcommand validate" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand status" -l node -d 'The node\'s admin API: its --listen address, or its --admin-listen address when it has one' -r
complete -c knactor -n "__fish_knactor_using_subcommand status" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand status" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -l node -d 'The node\'s admin API: its --listen address, or its --admin-listen address when it has one' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -s n -l namespace -d 'The broker\'s namespace, as kubectl\'s and kn\'s -n (default: default; a <namespace>/<broker> argument says it too)' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -f -a "list" -d 'List a broker\'s parked events'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -f -a "redrive" -d 'Deliver a broker\'s parked events again, each to the trigger that parked it'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and not __fish_seen_subcommand_from list redrive help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -l max -d 'List at most this many events (the total is counted all the same)' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -l node -d 'The node\'s admin API: its --listen address, or its --admin-listen address when it has one' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -s n -l namespace -d 'The broker\'s namespace, as kubectl\'s and kn\'s -n (default: default; a <namespace>/<broker> argument says it too)' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -l trigger -d 'Only this trigger\'s events (<namespace>/<name>, or a name in the broker\'s namespace)' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -l node -d 'The node\'s admin API: its --listen address, or its --admin-listen address when it has one' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -s n -l namespace -d 'The broker\'s namespace, as kubectl\'s and kn\'s -n (default: default; a <namespace>/<broker> argument says it too)' -r
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from redrive" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from help" -f -a "list" -d 'List a broker\'s parked events'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from help" -f -a "redrive" -d 'Deliver a broker\'s parked events again, each to the trigger that parked it'
complete -c knactor -n "__fish_knactor_using_subcommand parked; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knactor -n "__fish_knactor_using_subcommand trace" -l source -d 'The event\'s `source`, when several producers used the same id (default: the most recent event of that id)' -r
complete -c knactor -n "__fish_knactor_using_subcommand trace" -l node -d 'The node\'s admin API: its --listen address, or its --admin-listen address when it has one' -r
complete -c knactor -n "__fish_knactor_using_subcommand trace" -s o -l output -d 'Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md)' -r -f -a "text\t'Lines for people (the default)'
json\t'One JSON document'
yaml\t'The same document as YAML'"
complete -c knactor -n "__fish_knactor_using_subcommand trace" -l json -d 'Same as -o json'
complete -c knactor -n "__fish_knactor_using_subcommand trace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knactor -n "__fish_knactor_using_subcommand crdgen" -l out -d 'Write to this file instead of standard output' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand crdgen" -l check -d 'Check that this file holds exactly what would be generated (CI); exits non-zero when stale' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand crdgen" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_using_subcommand completions" -l out -d 'Write every shell\'s file (knactor.bash, _knactor, knactor.fish) into this directory' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand completions" -l check -d 'Check that this directory holds exactly what --out would write (CI); exits non-zero when stale' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand completions" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_using_subcommand man" -l out -d 'Write one page per command (knactor.1, knactor-run.1, ...) into this directory; without it, knactor.1 goes to standard output' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand man" -l check -d 'Check that this directory holds exactly what --out would write (CI); exits non-zero when stale' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand man" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_using_subcommand run" -l config -d 'Resource YAML: a file, or a directory read recursively (*.yaml, *.yml). Re-read on change. Without it, the node takes its resources from a cluster (--kubernetes or --kubeconfig)' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l lease-namespace -d 'Namespace of the controller\'s Lease and of the sources\' saved positions (default: POD_NAMESPACE, else default)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l lease-name -d 'Name of the Lease that elects the one replica running the controller and the sources' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l default-broker-selector -d 'Namespaces matching this label selector get a Broker named default (in a cluster); empty: none' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l default-delivery -d 'Delivery of brokers and triggers that give none, as a Knative DeliverySpec in JSON (default: Knative\'s: retry 10, exponential, PT0.2S)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l role -d 'What this node does: all (takes events in and delivers them), ingress (takes events in and appends them to the brokers\' Kafka topics) or dispatch (reads the topics and delivers; answers 421 to events). ingress and dispatch need Kafka brokers' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l channel -d 'The channel of brokers without a class annotation: memory or kafka (sets --default-broker-class)' -r -f -a "memory\t''
kafka\t''"
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-auth-dir -d 'A directory holding Knative\'s Kafka Secret keys as files (protocol, sasl.mechanism, user, password, ca.crt, user.crt, user.key): the node\'s Kafka credentials' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l listen -d 'Address of the broker ingress (and /healthz, /readyz, /metrics)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l admin-listen -d 'Serve the admin API (`/-/status`, parked events and their re-drive, event trails) on this address only, not on --listen: keep it off the gateway Service every workload can reach' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l admin-token-file -d 'A file holding the admin API\'s bearer token: every `/-/` request must carry `Authorization: Bearer <token>` (`knactor status` and friends read the same variable). Without it the admin API is open on a loopback listener and off on any other' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l advertise -d 'The ingress URL others use to reach this node (default: http://<listen>/)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-body-bytes -d 'Requests larger than this get 413' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-ttl -d 'Hop budget of a new event (knativebrokerttl)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trigger-queue -d 'Deliveries a trigger may have outstanding before it falls behind and catches up on its own' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trigger-concurrency -d 'Deliveries an unordered trigger runs at once' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l endpoint-concurrency -d 'Requests in flight to one subscriber endpoint, across all triggers' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l retry-backoff-max -d 'Longest wait between two attempts of a delivery' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l retry-after-max -d 'Longest Retry-After honoured when a delivery spec has no retryAfterMax' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l delivery-timeout -d 'Per-attempt timeout when a delivery spec has none' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l commit-interval -d 'How often dispatchers commit the offsets of finished deliveries: shorter means fewer redeliveries after a crash, longer means fewer commit requests' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l partitions -d 'Partitions of each broker\'s memory channel' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l memory-max-records -d 'Events the memory channel keeps per partition before it answers 503' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l memory-max-bytes -d 'Bytes of events the memory channel keeps in all (every broker, parking lots included) before it answers 503 with Retry-After; a batch that could never fit gets 413' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l drain-timeout -d 'On SIGTERM (or Ctrl-C), how long the node may take to finish what it accepted before it exits: it takes no new events, delivers what it owes (on the memory channel: every event it accepted; on Kafka: what it handed out, the rest stays for the next reader), commits and flushes its traces. Keep it below the pod\'s termination grace period' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l drain-delay -d 'On SIGTERM, how long the node still takes events, not ready any more, before it refuses new ones and drains: time for the Services in front of it to stop sending (in Kubernetes, a few seconds; on a laptop, none)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l reload-interval -d 'How often the configuration is checked for changes' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l admission-listen -d 'Serve the admission webhook (HTTPS: POST /mutate and /validate, what the chart\'s MutatingWebhookConfiguration and ValidatingWebhookConfiguration call) on this address. Needs the cluster (--kubernetes or --kubeconfig): it judges the cluster\'s Knative objects' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l admission-cert -d 'The webhook\'s certificate (PEM, its chain after it), read again when it changes (a renewed Secret, cert-manager). Without it and --admission-key, knactor generates a CA and a certificate for localhost, the loopback, the listen address and the host name, and prints the CA as the caBundle to give the webhook configurations' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l admission-key -d 'The private key of --admission-cert (PEM)' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l config-max-file-bytes -d 'A configuration file larger than this is refused (only its own resources)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l config-read-timeout -d 'How long reading one configuration file may take before it is refused (a hung mount, a FIFO swapped in)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l request-timeout -d 'A request\'s body must arrive within this of its head; a slower one gets 408 and its connection is closed' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l header-timeout -d 'A request\'s head must arrive within this of the connection opening; else 408 and the connection is closed' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l keep-alive -d 'How long an idle keep-alive connection stays open (0: no keep-alive)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-connections -d 'Connections the ingress listener holds open at once, all clients together; one more is answered 503 and closed before anything is read from it' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-connections-per-client -d 'Connections one client address may hold open; one more is answered 429 and closed' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l body-buffer-bytes -d 'Bytes the request bodies being read may hold together; a body that would go over gets 503 with Retry-After' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-attribute-bytes -d 'Bytes of one attribute value (id, source, type, subject, any extension) or extension name; an event with a larger one gets 400 naming it' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l max-extensions -d 'Extension attributes one event may carry; more get 400' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l probe-listen -d 'Also serve /healthz and /readyz here, on a worker of its own that no client of the ingress can starve: point the liveness and readiness probes at it' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-bootstrap -l kafka-bootstrap-servers -d 'Kafka bootstrap servers (host:port,...) of the node\'s cluster; brokers of class Kafka whose ConfigMap names no bootstrap.servers use it. Falls back to KAFKA_BOOTSTRAP_SERVERS' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l default-broker-class -d 'Class of brokers without the eventing.knative.dev/broker.class annotation: MTChannelBasedBroker (memory channel) or Kafka' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-topic-template -d 'Topic name of a broker: Knative\'s template, with {{.Namespace}} and {{.Name}}' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-partitions -d 'Partitions of a topic knactor creates, when the broker\'s ConfigMap does not say' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-replication-factor -d 'Replication factor of a topic knactor creates, when the ConfigMap does not say; -1: the cluster\'s default.replication.factor' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-append-timeout -d 'How long an append may wait for Kafka\'s acknowledgement before the producer gets 503' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-partition-assignment -d 'How a Kafka broker\'s partitions are spread over the nodes running it: group (Kafka consumer-group membership; nodes share the partitions) or all (this node reads every partition and commits the group\'s offsets without joining it: one node per broker)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l node-id -d 'This node\'s stable name (for example its pod name): with it, the node joins the brokers\' Kafka consumer groups as a static member and takes its partitions back at once after a restart' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-config -d 'Extra librdkafka settings, key=value, repeatable (or comma-separated in the variable), e.g. security.protocol=sasl_ssl' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l state-dir -d 'Where sources keep their positions across restarts (a PingSource\'s last tick, an ApiServerSource\'s resourceVersions). Default: $XDG_STATE_HOME/knactor, else ~/.local/state/knactor' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kubeconfig -d 'kubeconfig of the cluster ApiServerSources watch (with --config), or whose Knative resources the node runs (without --config). Falls back to KUBECONFIG' -r -F
complete -c knactor -n "__fish_knactor_using_subcommand run" -l log -d 'Log filter (error, warn, info, debug, or a RUST_LOG directive)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l otlp-endpoint -d 'Export traces over OTLP to this collector, e.g. http://localhost:4317 (Jaeger, gRPC) or http://localhost:4318 with --otlp-protocol http/protobuf. Without it nothing is exported' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l otlp-traces-endpoint -d 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the traces URL itself; wins over OTEL_EXPORTER_OTLP_ENDPOINT, not over --otlp-endpoint' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l otlp-protocol -d 'OTLP transport: grpc or http/protobuf' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l otel-service-name -d 'The service name spans are reported under' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trace-sampler -d 'Which traces are kept: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trace-sampler-arg -d 'The ratio of the *traceidratio samplers, between 0 and 1 (e.g. 0.01)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l otel-sdk-disabled -d 'OTEL_SDK_DISABLED=true turns export off whatever else is set' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trace-journal-events -d 'Events whose hops the node remembers for `knactor trace EVENT_ID` (0: none)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l trace-journal-bytes -d 'Bytes the journal may hold (ids, sources, hops and their details); the oldest events are forgotten first. Events with an id or source over 1 KiB are not journaled' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l jaeger-ui-url -d 'Jaeger\'s web UI, e.g. http://localhost:16686: the console links each event to its trace there (<url>/trace/<trace id>)' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l http-workers -d 'Threads serving HTTP [default: the CPUs, at most 4]' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l dispatch-workers -d 'Threads running broker actors [default: the CPUs, at most 4]' -r
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kubernetes -d 'Take the resources from the cluster this pod runs in (its ServiceAccount). Implied inside a pod (KUBERNETES_SERVICE_HOST set) when neither --config nor a kubeconfig is given'
complete -c knactor -n "__fish_knactor_using_subcommand run" -l strict -d 'Refuse exactly what Knative\'s webhook refuses, instead of loading its docs\' shapes with a warning'
complete -c knactor -n "__fish_knactor_using_subcommand run" -l kafka-delete-topics -d 'Delete a broker\'s topics when the broker is deleted (never an external topic)'
complete -c knactor -n "__fish_knactor_using_subcommand run" -l dry-run -d 'Check the flags and --config (as validate does), print what the node would run, and exit without starting it: non-zero when a resource would be refused'
complete -c knactor -n "__fish_knactor_using_subcommand run" -l fault-injection -d 'Allow POST /-/faults/... to crash actors (supervision tests only)'
complete -c knactor -n "__fish_knactor_using_subcommand run" -s h -l help -d 'Print help'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "display" -d 'Run an event-display sink that prints every CloudEvent it receives, like Knative\'s'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "send" -d 'Send CloudEvents to a URL (a broker ingress, a subscriber...)'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "validate" -d 'Check resource files without running them; exits non-zero when one is refused'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "status" -d 'Show what a running node runs, and what it does not and why'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "parked" -d 'List or re-drive a broker\'s parked events on a running node'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "trace" -d 'Where did my event go: the hops and outcomes a running node recorded for one event'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "crdgen" -d 'Write the custom resource definitions (generated from the Rust types), or check a copy'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish), or write or check them in a directory'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "man" -d 'Print the manual page, or write or check one page per command in a directory'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "run" -d 'Run a node: the broker ingress and the broker, trigger and subscriber actors'
complete -c knactor -n "__fish_knactor_using_subcommand help; and not __fish_seen_subcommand_from display send validate status parked trace crdgen completions man run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knactor -n "__fish_knactor_using_subcommand help; and __fish_seen_subcommand_from parked" -f -a "list" -d 'List a broker\'s parked events'
complete -c knactor -n "__fish_knactor_using_subcommand help; and __fish_seen_subcommand_from parked" -f -a "redrive" -d 'Deliver a broker\'s parked events again, each to the trigger that parked it'
