//! Resources from files: `--config PATH` is a file or a directory of `*.yaml`/`*.yml` files, read
//! at start and re-read whenever their content changes.
//!
//! A reload never loses what is running because of a mistake: an edit that breaks a file's YAML
//! keeps that file's previous resources, and an edit that makes one resource invalid keeps that
//! resource's previous version (as the Kubernetes API keeps an object whose update was refused).
//! Both are said in one line each.
//!
//! Nothing in the directory can hold the reader up or refuse what the other files hold: a file
//! that is not a regular file (a FIFO, a socket, a device) is skipped with a note without being
//! opened; a file larger than [`ReadLimits::max_file_bytes`], not UTF-8, or unreadable (a
//! self-referencing symlink) is refused on its own; and every read happens on a reader thread the
//! caller waits for at most [`ReadLimits::read_timeout`] per file (a read that never returns, as
//! on a hung network mount, refuses that file and is not started again while it hangs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use knactor_actors::resources::{Origin, Strictness};
use knactor_actors::routes::{identity, load_str, LoadReport, Resource};

/// Bounds on reading the configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadLimits {
    /// A larger file is refused (its resources only).
    pub max_file_bytes: u64,
    /// How long one file (or listing the directory) may take to read.
    pub read_timeout: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 * 1024 * 1024,
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// The flags that set [`ReadLimits`], shared by `knactor run` and `knactor validate`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ReadLimitArgs {
    /// A configuration file larger than this is refused (only its own resources).
    #[arg(long, env = "KNACTOR_CONFIG_MAX_FILE_BYTES", default_value_t = ReadLimits::default().max_file_bytes)]
    pub config_max_file_bytes: u64,
    /// How long reading one configuration file may take before it is refused (a hung mount, a
    /// FIFO swapped in).
    #[arg(long, env = "KNACTOR_CONFIG_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration_flag)]
    pub config_read_timeout: Duration,
}

impl ReadLimitArgs {
    pub(crate) fn limits(&self) -> ReadLimits {
        ReadLimits {
            max_file_bytes: self.config_max_file_bytes,
            read_timeout: self.config_read_timeout.max(Duration::from_millis(1)),
        }
    }
}

/// Reads the configuration path and remembers what loaded, for the next reload.
pub(crate) struct ConfigSource {
    path: PathBuf,
    strictness: Strictness,
    limits: ReadLimits,
    /// What every file held when last read (or why it could not be used), to notice changes.
    contents: BTreeMap<PathBuf, FileRead>,
    /// What listing the directory had to say (a subdirectory that cannot be listed...).
    notes: Vec<String>,
    /// Per file, the report of its last successful read.
    last_good: HashMap<PathBuf, LoadReport>,
    /// Files a reader thread is reading now: one that timed out stays here until its read
    /// returns, and is not read again meanwhile (so a hung read costs one thread, not one per poll).
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
    /// Whether a listing thread is still at work (one that timed out is not started again).
    listing: Arc<AtomicBool>,
    /// Whether `poll` has read once.
    polled: bool,
    /// The thread that lists and reads, kept from one reload to the next.
    reader_thread: ReaderThread,
    /// How one file is read (a seam for tests).
    reader: fn(&Path, u64) -> Option<FileRead>,
}

/// What one read produced, ready to build routes from.
pub(crate) struct Snapshot {
    pub report: LoadReport,
    /// Lines to show: refusals, warnings, and what was kept from before.
    pub refused: Vec<String>,
    pub warnings: Vec<String>,
    pub kept: Vec<String>,
}

/// One file, as the reader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileRead {
    Text(String),
    /// Not a regular file: skipped, with what it is.
    Skipped(&'static str),
    Refused(ReadRefused),
}

/// Why a file's resources cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadRefused {
    TooLarge {
        size: u64,
        limit: u64,
    },
    NotText,
    /// The file system said no (a symlink loop, permissions...).
    Unreadable(String),
    TimedOut(Duration),
    /// A read of it from an earlier reload has not returned yet.
    StillReading,
}

impl fmt::Display for ReadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadRefused::TooLarge { size, limit } => write!(
                f,
                "the file is {size} bytes, over the limit of {limit} (--config-max-file-bytes)"
            ),
            ReadRefused::NotText => f.write_str("the file is not UTF-8 text"),
            ReadRefused::Unreadable(error) => write!(f, "cannot read the file: {error}"),
            ReadRefused::TimedOut(limit) => write!(
                f,
                "reading the file took longer than {limit:?} (--config-read-timeout)"
            ),
            ReadRefused::StillReading => f.write_str(
                "an earlier read of the file has not returned yet (a hung mount?); it is not read again until it does",
            ),
        }
    }
}

impl ConfigSource {
    pub(crate) fn new(path: &Path, strictness: Strictness) -> anyhow::Result<Self> {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_file() || metadata.is_dir() => {}
            Ok(metadata) => bail!(
                "config path {} is {}, not a file or a directory",
                path.display(),
                kind_of(&metadata.file_type())
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                bail!("config path {} does not exist", path.display())
            }
            Err(error) => bail!("config path {}: {error}", path.display()),
        }
        Ok(Self {
            path: path.to_path_buf(),
            strictness,
            limits: ReadLimits::default(),
            contents: BTreeMap::new(),
            notes: Vec::new(),
            last_good: HashMap::new(),
            in_flight: Arc::default(),
            listing: Arc::default(),
            polled: false,
            reader_thread: ReaderThread::default(),
            reader: read_file,
        })
    }

    pub(crate) fn with_limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads everything when something changed since the last call (always on the first call).
    /// Blocks the calling thread for as long as the reads take (bounded per file by the read
    /// timeout): call it where blocking does no harm, never on an actor's thread.
    pub(crate) fn poll(&mut self) -> anyhow::Result<Option<Snapshot>> {
        let (contents, notes) = self.read_all()?;
        if self.polled && contents == self.contents && notes == self.notes {
            return Ok(None);
        }
        self.polled = true;
        self.contents = contents;
        self.notes = notes;
        Ok(Some(self.load()))
    }

    /// Lists and reads every file on the reader thread, waiting at most the read timeout for each
    /// step. A reader that hangs is left behind; the next files go to a new reader.
    fn read_all(&mut self) -> anyhow::Result<(BTreeMap<PathBuf, FileRead>, Vec<String>)> {
        let timeout = self.limits.read_timeout;
        let (files, notes) = {
            if self.listing.swap(true, Ordering::AcqRel) {
                bail!(
                    "an earlier listing of {} has not returned yet (a hung mount?)",
                    self.path.display()
                );
            }
            let root = self.path.clone();
            let listing = self.listing.clone();
            let (sender, receiver) = mpsc::channel();
            self.reader_thread.run(move || {
                let listed = list(&root);
                listing.store(false, Ordering::Release);
                let _ = sender.send(listed);
            })?;
            match receiver.recv_timeout(timeout) {
                Ok(listed) => {
                    listed.with_context(|| format!("cannot list {}", self.path.display()))?
                }
                Err(_) => {
                    self.reader_thread.let_go();
                    bail!(
                        "listing {} took longer than {timeout:?} (--config-read-timeout)",
                        self.path.display()
                    )
                }
            }
        };
        let mut contents = BTreeMap::new();
        let mut next = 0;
        while next < files.len() {
            let (sender, receiver) = mpsc::channel();
            let batch = files[next..].to_vec();
            let in_flight = self.in_flight.clone();
            let max = self.limits.max_file_bytes;
            let reader = self.reader;
            self.reader_thread
                .run(move || read_files(&batch, max, reader, &in_flight, &sender))?;
            let mut reading = None;
            loop {
                match receiver.recv_timeout(timeout) {
                    Ok(Progress::Reading(index)) => reading = Some(index),
                    Ok(Progress::Read(index, read)) => {
                        reading = None;
                        if let Some(read) = read {
                            contents.insert(files[next + index].clone(), read);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        next = files.len();
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let Some(index) = reading else {
                            // Between two files: the reader is only slow to be scheduled.
                            continue;
                        };
                        contents.insert(
                            files[next + index].clone(),
                            FileRead::Refused(ReadRefused::TimedOut(timeout)),
                        );
                        // The reader stops once its read returns (its receiver is gone).
                        self.reader_thread.let_go();
                        next += index + 1;
                        break;
                    }
                }
            }
        }
        Ok((contents, notes))
    }

    fn load(&mut self) -> Snapshot {
        let mut snapshot = Snapshot {
            report: LoadReport::default(),
            refused: Vec::new(),
            warnings: self.notes.clone(),
            kept: Vec::new(),
        };
        let mut last_good = HashMap::new();
        for (file, read) in &self.contents {
            let name = file.display().to_string();
            let previous = self.last_good.get(file);
            let text = match read {
                FileRead::Text(text) => text,
                FileRead::Skipped(what) => {
                    snapshot
                        .warnings
                        .push(format!("{name}: skipped: it is {what}, not a regular file"));
                    continue;
                }
                FileRead::Refused(why) => {
                    snapshot.refused.push(format!("{name}: {why}"));
                    if let Some(previous) = previous {
                        snapshot.kept.push(format!(
                            "{name}: keeping the resources it held before it became unreadable"
                        ));
                        last_good.insert(file.clone(), clone_report(previous));
                        snapshot.report.merge(clone_report(previous));
                    }
                    continue;
                }
            };
            let mut report = load_str(text, &name, self.strictness);
            let broken_yaml = report.broken_yaml;
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
        broken_yaml: false,
    }
}

/// A thread for the configuration's reads, started at the first and kept for the next (a reload
/// every second started two threads a second before). One that a read holds past the timeout is
/// let go: it ends once that read returns, and the next reads go to a new one.
#[derive(Default)]
struct ReaderThread {
    jobs: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl ReaderThread {
    fn run(&mut self, job: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
        let job: Box<dyn FnOnce() + Send> = Box::new(job);
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return Ok(()),
                // The thread is gone (it cannot be, short of a panic in a read): a new one.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("config-read".into())
            .spawn(move || queue.into_iter().for_each(|job| job()))
            .context("cannot start a thread to read the configuration")?;
        jobs.send(job)
            .map_err(|_| anyhow::anyhow!("the configuration's reader thread ended at its start"))?;
        self.jobs = Some(jobs);
        Ok(())
    }

    /// Leaves the thread to the read that holds it.
    fn let_go(&mut self) {
        self.jobs = None;
    }
}

/// What a reader thread tells the thread waiting for it.
enum Progress {
    /// It starts reading the file at this index of its batch.
    Reading(usize),
    /// What it found (`None`: the file went away since the listing).
    Read(usize, Option<FileRead>),
}

/// A reader thread: reads `files` in turn, stopping when nobody listens any more.
fn read_files(
    files: &[PathBuf],
    max_bytes: u64,
    reader: fn(&Path, u64) -> Option<FileRead>,
    in_flight: &Mutex<HashSet<PathBuf>>,
    progress: &mpsc::Sender<Progress>,
) {
    for (index, file) in files.iter().enumerate() {
        if progress.send(Progress::Reading(index)).is_err() {
            return;
        }
        let fresh = in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(file.clone());
        let read = if fresh {
            let read = reader(file, max_bytes);
            in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(file);
            read
        } else {
            Some(FileRead::Refused(ReadRefused::StillReading))
        };
        if progress.send(Progress::Read(index, read)).is_err() {
            return;
        }
    }
}

/// Reads one listed file: a regular file of at most `max_bytes` of UTF-8, else why not. Anything
/// else is not opened (opening a FIFO blocks until someone writes to it).
fn read_file(file: &Path, max_bytes: u64) -> Option<FileRead> {
    let metadata = match std::fs::metadata(file) {
        Ok(metadata) => metadata,
        // Removed or replaced between listing and reading: the next poll sees it.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            return Some(FileRead::Refused(ReadRefused::Unreadable(
                error.to_string(),
            )))
        }
    };
    if !metadata.is_file() {
        return Some(FileRead::Skipped(kind_of(&metadata.file_type())));
    }
    let too_large = |size| {
        Some(FileRead::Refused(ReadRefused::TooLarge {
            size,
            limit: max_bytes,
        }))
    };
    if metadata.len() > max_bytes {
        return too_large(metadata.len());
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(file)
        .and_then(|opened| opened.take(max_bytes + 1).read_to_end(&mut bytes));
    match read {
        Ok(_) if bytes.len() as u64 > max_bytes => too_large(bytes.len() as u64),
        Ok(_) => Some(match String::from_utf8(bytes) {
            Ok(text) => FileRead::Text(text),
            Err(_) => FileRead::Refused(ReadRefused::NotText),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => Some(FileRead::Refused(ReadRefused::Unreadable(
            error.to_string(),
        ))),
    }
}

/// The files to read under `root` (itself, when it is a file), sorted, and notes on what could
/// not be listed below it.
fn list(root: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<String>)> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    if std::fs::metadata(root)?.is_file() {
        return Ok((vec![root.to_path_buf()], notes));
    }
    let mut visited = HashSet::new();
    collect_yaml(root, true, &mut files, &mut notes, &mut visited)?;
    files.sort();
    Ok((files, notes))
}

/// `*.yaml` and `*.yml` under `dir`, following symlinks but never into a directory twice (a link
/// to a parent). Only the root failing to list is an error; a subdirectory says so in a note.
fn collect_yaml(
    dir: &Path,
    root: bool,
    files: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
    visited: &mut HashSet<(u64, u64)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let entries = match std::fs::read_dir(dir).and_then(|entries| {
        let metadata = std::fs::metadata(dir)?;
        Ok((entries, (metadata.dev(), metadata.ino())))
    }) {
        Ok((entries, identity)) => {
            if !visited.insert(identity) {
                return Ok(());
            }
            entries
        }
        Err(error) if root => return Err(error),
        Err(error) => {
            notes.push(format!(
                "{}: skipped: cannot list it: {error}",
                dir.display()
            ));
            return Ok(());
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(error) => {
                notes.push(format!("{}: skipped an entry: {error}", dir.display()));
                continue;
            }
        };
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        let yaml = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                collect_yaml(&path, false, files, notes, visited)?;
            }
            // Whatever else it is (a FIFO, a broken link), the reader says so.
            _ if yaml => files.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// What a file that is not a regular file is, for the note that skips it.
fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "something other than a file"
    }
}

/// Parses `500ms`, `2s`, `1m` for CLI flags.
pub(crate) fn parse_duration_flag(text: &str) -> Result<Duration, String> {
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

    fn warnings_and_refusals(snapshot: &Snapshot) -> (Vec<String>, Vec<String>) {
        (snapshot.warnings.clone(), snapshot.refused.clone())
    }

    #[test]
    fn a_fifo_is_skipped_with_a_note_without_being_opened_and_the_other_files_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKER).unwrap();
        let fifo = dir.path().join("pipe.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient).unwrap();
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(kinds(&snapshot), vec!["Broker"]);
        let (warnings, refused) = warnings_and_refusals(&snapshot);
        assert_eq!(
            warnings,
            vec![format!(
                "{}: skipped: it is a FIFO, not a regular file",
                fifo.display()
            )]
        );
        assert!(refused.is_empty());
        assert!(source.poll().unwrap().is_none(), "nothing changed");
    }

    #[test]
    fn garbage_a_symlink_loop_and_an_oversized_file_refuse_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKER).unwrap();
        std::fs::write(dir.path().join("b.yaml"), [0xff, 0xfe, 0x00, 0x9c, 0x80]).unwrap();
        std::os::unix::fs::symlink("self.yaml", dir.path().join("self.yaml")).unwrap();
        std::fs::write(
            dir.path().join("big.yaml"),
            format!("{BROKER}#{}\n", "x".repeat(300)),
        )
        .unwrap();
        std::fs::write(dir.path().join("t.yaml"), TRIGGER_OK).unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient)
            .unwrap()
            .with_limits(ReadLimits {
                max_file_bytes: 200,
                ..ReadLimits::default()
            });
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(kinds(&snapshot), vec!["Broker", "Trigger"]);
        let name = |file: &str| dir.path().join(file).display().to_string();
        assert_eq!(
            snapshot.refused,
            vec![
                format!("{}: the file is not UTF-8 text", name("b.yaml")),
                format!(
                    "{}: the file is 380 bytes, over the limit of 200 (--config-max-file-bytes)",
                    name("big.yaml")
                ),
                format!(
                    "{}: cannot read the file: Too many levels of symbolic links (os error 40)",
                    name("self.yaml")
                ),
            ]
        );
    }

    #[test]
    fn a_file_that_becomes_unreadable_keeps_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.yaml");
        std::fs::write(&file, format!("{BROKER}{TRIGGER_OK}")).unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient).unwrap();
        source.poll().unwrap().unwrap();
        std::fs::write(&file, [0xffu8; 16]).unwrap();
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(kinds(&snapshot), vec!["Broker", "Trigger"]);
        assert_eq!(snapshot.refused.len(), 1);
        assert_eq!(snapshot.kept.len(), 1);
    }

    #[test]
    fn a_directory_linked_into_itself_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), BROKER).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("sub/up")).unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient).unwrap();
        assert_eq!(kinds(&source.poll().unwrap().unwrap()), vec!["Broker"]);
    }

    /// Reads `slow.yaml` as a hung mount would: it returns only once `RELEASE` is set.
    fn hanging_reader(file: &Path, max: u64) -> Option<FileRead> {
        if file.ends_with("slow.yaml") {
            while !RELEASE.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        read_file(file, max)
    }
    static RELEASE: AtomicBool = AtomicBool::new(false);

    /// Reads as `read_file` does, noting which thread read.
    fn thread_noting_reader(file: &Path, max: u64) -> Option<FileRead> {
        let mut threads = READ_ON.lock().unwrap();
        let this = std::thread::current().id();
        if !threads.contains(&this) {
            threads.push(this);
        }
        drop(threads);
        read_file(file, max)
    }
    static READ_ON: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

    #[test]
    fn reloads_read_on_one_thread_kept_between_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKER).unwrap();
        std::fs::write(dir.path().join("b.yaml"), TRIGGER_OK).unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient).unwrap();
        source.reader = thread_noting_reader;
        for _ in 0..5 {
            source.poll().unwrap();
        }
        let threads = READ_ON.lock().unwrap();
        assert_eq!(threads.len(), 1, "{threads:?}");
        assert!(!threads.contains(&std::thread::current().id()));
    }

    #[test]
    fn a_read_that_hangs_refuses_its_file_after_the_timeout_and_is_not_started_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKER).unwrap();
        std::fs::write(dir.path().join("slow.yaml"), TRIGGER_OK).unwrap();
        std::fs::write(
            dir.path().join("z.yaml"),
            TRIGGER_OK.replace("name: t", "name: z"),
        )
        .unwrap();
        let mut source = ConfigSource::new(dir.path(), Strictness::Lenient)
            .unwrap()
            .with_limits(ReadLimits {
                read_timeout: Duration::from_millis(200),
                ..ReadLimits::default()
            });
        source.reader = hanging_reader;
        let started = std::time::Instant::now();
        let snapshot = source.poll().unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            kinds(&snapshot),
            vec!["Broker", "Trigger"],
            "a.yaml and z.yaml"
        );
        let slow = dir.path().join("slow.yaml").display().to_string();
        assert_eq!(
            snapshot.refused,
            vec![format!(
                "{slow}: reading the file took longer than 200ms (--config-read-timeout)"
            )]
        );
        let snapshot = source.poll().unwrap().unwrap();
        assert_eq!(
            snapshot.refused,
            vec![format!("{slow}: an earlier read of the file has not returned yet (a hung mount?); it is not read again until it does")]
        );
        RELEASE.store(true, Ordering::Release);
        wait_for(|| {
            !source
                .in_flight
                .lock()
                .unwrap()
                .contains(&dir.path().join("slow.yaml"))
        });
        let snapshot = source.poll().unwrap().unwrap();
        assert!(snapshot.refused.is_empty(), "{:?}", snapshot.refused);
        assert_eq!(kinds(&snapshot), vec!["Broker", "Trigger", "Trigger"]);
    }

    fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_config_path_that_is_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let error = ConfigSource::new(&fifo, Strictness::Lenient).err().unwrap();
        assert!(
            error
                .to_string()
                .ends_with("is a FIFO, not a file or a directory"),
            "{error}"
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
