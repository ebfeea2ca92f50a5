//! The two error families of CESQL: parse errors reject an expression
//! outright, evaluation errors travel alongside a value (spec §3.3).

use std::fmt;

/// Which of the spec's error types (§3.3) an evaluation error belongs to.
///
/// `ParseError` is absent on purpose: a parse error never reaches
/// evaluation, it is the `Err` of [`crate::Expression::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalErrorKind {
    /// A mathematical operation failed (division by zero, overflow).
    Math,
    /// An implicit or explicit type cast failed.
    Cast,
    /// A function name/arity pair has no definition.
    MissingFunction,
    /// A built-in function rejected its arguments.
    FunctionEvaluation,
    /// The expression addressed an attribute the event does not carry.
    MissingAttribute,
    /// Anything else; the built-ins never produce it, but the spec lists it.
    Generic,
}

impl fmt::Display for EvalErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvalErrorKind::Math => "math",
            EvalErrorKind::Cast => "cast",
            EvalErrorKind::MissingFunction => "missing function",
            EvalErrorKind::FunctionEvaluation => "function evaluation",
            EvalErrorKind::MissingAttribute => "missing attribute",
            EvalErrorKind::Generic => "generic",
        })
    }
}

/// One error collected while evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct EvalError {
    pub kind: EvalErrorKind,
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(kind: EvalErrorKind, message: impl Into<String>) -> Self {
        EvalError {
            kind,
            message: message.into(),
        }
    }
}

/// Where in the source a parse error was detected (1-based, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    line: usize,
    column: usize,
}

impl Position {
    /// Translates a byte offset into a line/column pair. Done only when an
    /// error is built, so the lexer can work in cheap byte offsets.
    pub(crate) fn of(src: &str, byte_offset: usize) -> Position {
        let before = src.get(..byte_offset).unwrap_or(src);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nearly every filter is a one-liner; naming line 1 would be noise.
        if self.line == 1 {
            write!(f, "column {}", self.column)
        } else {
            write!(f, "line {}, column {}", self.line, self.column)
        }
    }
}

/// Why an expression could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {position}: {message}")]
pub struct ParseError {
    position: Position,
    message: String,
}

impl ParseError {
    pub(crate) fn new(src: &str, byte_offset: usize, message: impl Into<String>) -> Self {
        ParseError {
            position: Position::of(src, byte_offset),
            message: message.into(),
        }
    }

    /// 1-based line of the offending input.
    pub fn line(&self) -> usize {
        self.position.line
    }

    /// 1-based column (in characters) of the offending input.
    pub fn column(&self) -> usize {
        self.position.column
    }

    /// What went wrong, without the position prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_only_the_column_on_the_first_line() {
        let err = ParseError::new("a AND ", 6, "expected an expression after 'AND'");
        assert_eq!(
            err.to_string(),
            "at column 7: expected an expression after 'AND'"
        );
    }

    #[test]
    fn parse_error_names_line_and_column_past_the_first_line() {
        let err = ParseError::new("a AND\n  é )", 11, "x");
        assert_eq!((err.line(), err.column()), (2, 5));
        assert_eq!(err.to_string(), "at line 2, column 5: x");
    }

    #[test]
    fn eval_error_display_names_its_kind() {
        let err = EvalError::new(EvalErrorKind::Math, "division by zero");
        assert_eq!(err.to_string(), "math error: division by zero");
    }
}
