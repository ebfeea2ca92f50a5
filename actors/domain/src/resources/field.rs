//! Field errors, named by their path the way Kubernetes validation names them
//! (`spec.filters[0].exact`), and the outcome of checking one resource.

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the document root, e.g. `spec.delivery.backoffDelay`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// How closely resources are held to Knative's webhook.
///
/// `Lenient` (the default) loads what Knative's own documentation and test renders show even where
/// Knative's webhook would refuse it (a filter object with several dialects, a duration without its
/// leading `P`, a Trigger without a subscriber) and says so in a warning. `Strict` refuses exactly what
/// the webhook refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    #[default]
    Lenient,
    Strict,
}

/// Collects errors and warnings while a resource is checked and converted.
#[derive(Debug, Default)]
pub struct Checker {
    strictness: Strictness,
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Checker {
    pub fn new(strictness: Strictness) -> Self {
        Self {
            strictness,
            ..Self::default()
        }
    }

    pub fn strictness(&self) -> Strictness {
        self.strictness
    }

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    /// Something Knative's webhook refuses and knactor tolerates: a warning when lenient, an error
    /// when strict.
    pub fn tolerate(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let problem = FieldError::new(path, message);
        match self.strictness {
            Strictness::Lenient => self.warnings.push(problem),
            Strictness::Strict => self.errors.push(problem),
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The converted value when nothing was refused.
    pub fn finish<T>(self, value: T) -> Result<Checked<T>, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(Checked {
                value,
                warnings: self.warnings,
            })
        } else {
            Err(self.errors)
        }
    }

    /// Like [`Checker::finish`], for conversions that could not build a value because of the errors.
    pub fn finish_with<T>(self, build: impl FnOnce() -> T) -> Result<Checked<T>, Vec<FieldError>> {
        if self.errors.is_empty() {
            self.finish(build())
        } else {
            Err(self.errors)
        }
    }
}

/// A converted value and what was tolerated on the way.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    pub value: T,
    pub warnings: Vec<FieldError>,
}

/// Joins field paths: `join("spec", "broker") == "spec.broker"`.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

/// Kubernetes names: a DNS-1123 subdomain (names) or label (namespaces).
pub fn check_dns_name(checker: &mut Checker, path: &str, value: &str, max_len: usize) {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.is_empty() {
        checker.error(path, "required");
    } else if value.len() > max_len {
        checker.error(
            path,
            format!("{value:?} is longer than {max_len} characters"),
        );
    } else if !value.split('.').all(valid_label) {
        checker.error(
            path,
            format!(
                "{value:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        );
    }
}
