//! CESQL's three primitive types (§3.1) and the casts between them (§3.7).
//!
//! Evaluation works on [`Val`], which borrows strings from the expression
//! or the event wherever it can; only the final result becomes an owned
//! [`Value`].

use std::borrow::Cow;
use std::fmt;

use crate::error::{EvalError, EvalErrorKind};

/// The result of evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Boolean(bool),
    Integer(i32),
    String(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::String(s) => f.write_str(s),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Integer(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Boolean,
    Integer,
    String,
}

impl Type {
    /// The value an operator or function yields when it cannot compute one
    /// (§3.3), e.g. because an operand already failed.
    pub(crate) fn zero<'a>(self) -> Val<'a> {
        match self {
            Type::Boolean => Val::Bool(false),
            Type::Integer => Val::Int(0),
            Type::String => Val::Str(Cow::Borrowed("")),
        }
    }
}

/// A value during evaluation; `'a` is the shorter of the expression's and
/// the event's lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val<'a> {
    Bool(bool),
    Int(i32),
    Str(Cow<'a, str>),
}

impl Default for Val<'_> {
    fn default() -> Self {
        Val::Bool(false)
    }
}

impl<'a> Val<'a> {
    pub(crate) fn ty(&self) -> Type {
        match self {
            Val::Bool(_) => Type::Boolean,
            Val::Int(_) => Type::Integer,
            Val::Str(_) => Type::String,
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Bool(b) => Value::Boolean(b),
            Val::Int(i) => Value::Integer(i),
            Val::Str(s) => Value::String(s.into_owned()),
        }
    }

    /// Casts to Integer; on failure records a cast error and yields `0`.
    pub(crate) fn into_int(self, errors: &mut Vec<EvalError>) -> i32 {
        match self {
            Val::Int(i) => i,
            Val::Bool(b) => i32::from(b),
            Val::Str(s) => match parse_integer(&s) {
                Some(i) => i,
                None => {
                    errors.push(EvalError::new(
                        EvalErrorKind::Cast,
                        format!("cannot cast string {} to integer", quoted(&s)),
                    ));
                    0
                }
            },
        }
    }

    /// Casts to Boolean as an operator operand would.
    ///
    /// Integer to Boolean is refused here even though the spec's cast
    /// table allows it: the TCK requires `NOT 10` to raise a cast error,
    /// while `BOOL(10)` succeeds. Explicit casts use
    /// [`Val::into_bool_explicit`].
    pub(crate) fn into_bool(self, errors: &mut Vec<EvalError>) -> bool {
        match self {
            Val::Int(i) => {
                errors.push(EvalError::new(
                    EvalErrorKind::Cast,
                    format!("cannot implicitly cast integer {i} to boolean"),
                ));
                false
            }
            other => other.into_bool_explicit(errors),
        }
    }

    /// Casts to Boolean with the full §3.7 table, as `BOOL(x)` does.
    pub(crate) fn into_bool_explicit(self, errors: &mut Vec<EvalError>) -> bool {
        match self {
            Val::Bool(b) => b,
            Val::Int(i) => i != 0,
            Val::Str(s) => match parse_boolean(&s) {
                Some(b) => b,
                None => {
                    errors.push(EvalError::new(
                        EvalErrorKind::Cast,
                        format!("cannot cast string {} to boolean", quoted(&s)),
                    ));
                    false
                }
            },
        }
    }

    /// Casts to String; this cast cannot fail.
    pub(crate) fn into_str(self) -> Cow<'a, str> {
        match self {
            Val::Str(s) => s,
            Val::Bool(true) => Cow::Borrowed("true"),
            Val::Bool(false) => Cow::Borrowed("false"),
            Val::Int(i) => Cow::Owned(i.to_string()),
        }
    }

    /// Implicit cast to `target`, with operator (not `BOOL()`) semantics.
    pub(crate) fn cast(self, target: Type, errors: &mut Vec<EvalError>) -> Val<'a> {
        match target {
            Type::Boolean => Val::Bool(self.into_bool(errors)),
            Type::Integer => Val::Int(self.into_int(errors)),
            Type::String => Val::Str(self.into_str()),
        }
    }
}

/// Base-10, optional leading sign, 32 bits, nothing else (no whitespace).
pub(crate) fn parse_integer(s: &str) -> Option<i32> {
    s.parse::<i32>().ok()
}

/// `true`/`false` in any letter case. Only ASCII letters can lowercase to
/// these words, so an ASCII case-insensitive comparison is exact.
pub(crate) fn parse_boolean(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Quotes a value for an error message, cutting it short: attribute values
/// are user data and may be arbitrarily long.
pub(crate) fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("'{}…'", &s[..cut]),
        None => format!("'{s}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(text))
    }

    #[test]
    fn string_to_integer_accepts_a_leading_sign() {
        let mut errors = Vec::new();
        assert_eq!(s("+42").into_int(&mut errors), 42);
        assert_eq!(s("-42").into_int(&mut errors), -42);
        assert!(errors.is_empty());
    }

    #[test]
    fn string_to_integer_rejects_overflow_and_whitespace_with_zero() {
        for text in ["2147483648", " 1", "1 ", "", "0x10", "1.0"] {
            let mut errors = Vec::new();
            assert_eq!(s(text).into_int(&mut errors), 0, "{text:?}");
            assert_eq!(errors[0].kind, EvalErrorKind::Cast, "{text:?}");
        }
    }

    #[test]
    fn string_to_boolean_ignores_letter_case() {
        let mut errors = Vec::new();
        assert!(s("tRuE").into_bool(&mut errors));
        assert!(!s("FALSE").into_bool(&mut errors));
        assert!(errors.is_empty());
        assert!(!s("yes").into_bool(&mut errors));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn integer_to_boolean_is_explicit_only() {
        let mut errors = Vec::new();
        assert!(Val::Int(-50).into_bool_explicit(&mut errors));
        assert!(errors.is_empty());
        assert!(!Val::Int(10).into_bool(&mut errors));
        assert_eq!(errors[0].kind, EvalErrorKind::Cast);
    }

    #[test]
    fn casts_to_string_never_fail() {
        assert_eq!(Val::Bool(true).into_str(), "true");
        assert_eq!(Val::Int(i32::MIN).into_str(), "-2147483648");
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        let long = "é".repeat(100);
        let q = quoted(&long);
        assert_eq!(q.chars().count(), 64 + 3);
    }
}
