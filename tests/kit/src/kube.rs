//! A real Kubernetes API server (etcd + kube-apiserver v1.20, from `scripts/kube-up.sh`) with its
//! state in a temporary directory; stopped when dropped. `kubectl` runs against it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::repo_path;

#[derive(Debug)]
pub struct KubeApiServer {
    dir: tempfile::TempDir,
    /// The kubeconfig (an admin token in system:masters).
    pub kubeconfig: PathBuf,
}

impl KubeApiServer {
    /// Starts one (about 10 s); panics with the scripts' output when it cannot.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with the chart's Knative CRDs and `extra` ones (YAML) applied, all established.
    pub fn start_with_crds(extra: &[&str]) -> Self {
        let kube = Self::start();
        let crds = repo_path("charts/knactor/crds/knative-eventing.yaml");
        kube.kubectl(&["apply", "-f", crds.to_str().unwrap()]);
        for crd in extra {
            kube.apply(crd);
        }
        kube.kubectl(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "60s",
            "crd",
            "--all",
        ]);
        kube
    }

    /// Starts one whose kube-apiserver also gets `flags`.
    pub fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(repo_path("scripts/kube-up.sh"))
            .arg(dir.path())
            .env("KNACTOR_KUBE_APISERVER_ARGS", flags.join(" "))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/kube-up.sh runs");
        assert!(
            output.status.success(),
            "scripts/kube-up.sh failed (install the tools with `scripts/install-tools.sh --only kube`):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let kubeconfig = dir.path().join("kubeconfig");
        Self { dir, kubeconfig }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        let config = std::fs::read_to_string(&self.kubeconfig).unwrap();
        config
            .lines()
            .find_map(|line| line.trim().strip_prefix("server: "))
            .expect("the kubeconfig names its server")
            .to_string()
    }

    /// Runs kubectl with `args` (and `input` on stdin).
    pub fn kubectl_with(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new(crate::tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = self.kubectl_with(args, None);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        let output = self.kubectl_with(&["apply", "-f", "-"], Some(yaml));
        assert!(
            output.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A kubeconfig that authenticates as the ServiceAccount `namespace/name` with a token the API
    /// server issues for it (TokenRequest, one hour): what a pod running as that account has.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl(&[
            "create",
            "token",
            name,
            "--namespace",
            namespace,
            "--duration",
            "1h",
        ]);
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let config: String = admin
            .lines()
            .map(|line| match line.trim_start().strip_prefix("token: ") {
                Some(_) => format!("    token: {}", token.trim()),
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(
            config, admin,
            "the admin kubeconfig has a token line to replace"
        );
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{namespace}-{name}"));
        std::fs::write(&path, config + "\n").unwrap();
        path
    }

    /// The API server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_path("scripts/kube-down.sh"))
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
