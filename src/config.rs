//! Resources from files: `--config PATH` is a file or a directory of `*.yaml`/`*.yml` files, read
//! at start and re-read whenever their content changes.
//!
//! A reload never loses what is running because of a mistake: an edit that breaks a file's YAML
//! keeps that file's previous resources, and an edit that makes one resource invalid keeps that
//! resource's previous version (as the Kubernetes API keeps an object whose update was refused).
//! Both are said in one line each.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use knactor_actors::resources::loader::{identity, Origin};
use knactor_actors::resources::{load_str, LoadReport, Resource, Strictness};

/// Reads the configuration path and remembers what loaded, for the next reload.
pub struct ConfigSource {
    path: PathBuf,
    strictness: Strictness,
    /// Content of every file last read, to notice changes.
    contents: BTreeMap<PathBuf, String>,
    /// Per file, the report of its last successful read.
    last_good: HashMap<PathBuf, LoadReport>,
}

/// What one read produced, ready to build routes from.
pub struct Snapshot {
    pub report: LoadReport,
    /// Lines to show: refusals, warnings, and what was kept from before.
    pub refused: Vec<String>,
    pub warnings: Vec<String>,
    pub kept: Vec<String>,
}

impl ConfigSource {
    pub fn new(path: &Path, strictness: Strictness) -> anyhow::Result<Self> {
        if !path.exists() {
            bail!("config path {} does not exist", path.display());
        }
        Ok(Self {
            path: path.to_path_buf(),
            strictness,
            contents: BTreeMap::new(),
            last_good: HashMap::new(),
        })
    }

    fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        if self.path.is_file() {
            return Ok(vec![self.path.clone()]);
        }
        let mut files = Vec::new();
        collect_yaml(&self.path, &mut files)
            .with_context(|| format!("cannot list {}", self.path.display()))?;
        files.sort();
        Ok(files)
    }

    /// Reads everything when something changed since the last call (always on the first call).
    pub fn poll(&mut self) -> anyhow::Result<Option<Snapshot>> {
        let mut contents = BTreeMap::new();
        for file in self.files()? {
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    contents.insert(file, text);
                }
                // A file removed or replaced between listing and reading: next poll sees it.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot read {}", file.display()))
                }
            }
        }
        if !self.contents.is_empty() && contents == self.contents {
            return Ok(None);
        }
        self.contents = contents;
        Ok(Some(self.load()))
    }

    fn load(&mut self) -> Snapshot {
        let mut snapshot = Snapshot {
            report: LoadReport::default(),
            refused: Vec::new(),
            warnings: Vec::new(),
            kept: Vec::new(),
        };
        let mut last_good = HashMap::new();
        for (file, text) in &self.contents {
            let name = file.display().to_string();
            let mut report = load_str(text, &name, self.strictness);
            let previous = self.last_good.get(file);
            let broken_yaml = report.refused.iter().any(|refusal| {
                refusal.resource.is_none()
                    && refusal
                        .errors
                        .iter()
                        .any(|e| e.message.starts_with("not valid YAML"))
            });
            snapshot
                .refused
                .extend(report.refused.iter().map(ToString::to_string));
            snapshot
                .warnings
                .extend(report.warnings.iter().map(ToString::to_string));
            if let Some(previous) = previous {
                if broken_yaml {
                    snapshot.kept.push(format!(
                        "{name}: keeping the resources it held before this edit"
                    ));
                    report = clone_report(previous);
                } else {
                    keep_previous_versions(&mut report, previous, &mut snapshot.kept);
                }
            }
            last_good.insert(file.clone(), clone_report(&report));
            snapshot.report.merge(report);
        }
        self.last_good = last_good;
        snapshot
    }
}

/// Resources refused now that were accepted before keep their previous version.
fn keep_previous_versions(report: &mut LoadReport, previous: &LoadReport, kept: &mut Vec<String>) {
    let refused_names: Vec<String> = report
        .refused
        .iter()
        .filter_map(|r| r.resource.clone())
        .collect();
    for (origin, resource) in &previous.accepted {
        let Some((kind, key)) = identity(resource) else {
            continue;
        };
        let name = format!("{kind} {key}");
        let still_there = report
            .accepted
            .iter()
            .any(|(_, now)| identity(now).is_some_and(|(k, n)| k == kind && n == key));
        if refused_names.contains(&name) && !still_there {
            kept.push(format!(
                "{}: {name}: keeping its previous version until the edit is fixed",
                origin.source
            ));
            report.accepted.push((origin.clone(), resource.clone()));
        }
    }
}

fn clone_report(report: &LoadReport) -> LoadReport {
    LoadReport {
        accepted: report
            .accepted
            .iter()
            .map(|(o, r): &(Origin, Resource)| (o.clone(), r.clone()))
            .collect(),
        refused: Vec::new(),
        warnings: Vec::new(),
        skipped: Vec::new(),
    }
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Parses `500ms`, `2s`, `1m` for CLI flags.
pub fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|at| text.split_at(at))
        .unwrap_or((text, "s"));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 2s or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?} is not a duration like 500ms, 2s or 1m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKER: &str =
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {}\n";
    const TRIGGER_OK: &str = "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b, subscriber: {uri: 'http://127.0.0.1:1/'}}\n";
    const TRIGGER_BAD: &str = "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b, filter: {attributes: {BAD: x}}, subscriber: {uri: 'http://127.0.0.1:1/'}}\n";

    fn kinds(snapshot: &Snapshot) -> Vec<&'static str> {
        snapshot
            .report
            .accepted
            .iter()
            .map(|(_, r)| r.kind())
            .collect()
    }

    #[test]
    fn a_directory_is_read_and_only_changes_cause_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKER).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not config").unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient).unwrap();
        assert_eq!(kinds(&source.poll().unwrap().unwrap()), vec!["Broker"]);
        assert!(source.poll().unwrap().is_none());
        std::fs::write(dir.path().join("b.yml"), TRIGGER_OK).unwrap();
        assert_eq!(
            kinds(&source.poll().unwrap().unwrap()),
            vec!["Broker", "Trigger"]
        );
    }

    #[test]
    fn a_broken_edit_keeps_what_ran_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.yaml");
        std::fs::write(&file, format!("{BROKER}{TRIGGER_OK}")).unwrap();
        let mut source = ConfigSource::new(&file, Strictness::Lenient).unwrap();
        source.poll().unwrap().unwrap();

        std::fs::write(&file, format!("{BROKER}{TRIGGER_BAD}")).unwrap();
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(snapshot.refused.len(), 1);
        assert_eq!(
            kinds(&snapshot),
            vec!["Broker", "Trigger"],
            "the trigger keeps its previous version"
        );
        assert_eq!(snapshot.kept.len(), 1);

        std::fs::write(&file, "apiVersion: [unclosed\n").unwrap();
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(
            kinds(&snapshot),
            vec!["Broker", "Trigger"],
            "broken YAML keeps the file's resources"
        );
    }

    #[test]
    fn a_missing_path_is_an_error() {
        assert!(ConfigSource::new(Path::new("/nonexistent/knactor"), Strictness::Lenient).is_err());
    }

    #[test]
    fn duration_flags_take_units() {
        assert_eq!(parse_duration_flag("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration_flag("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration_flag("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration_flag("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration_flag("soon").is_err());
    }
}
