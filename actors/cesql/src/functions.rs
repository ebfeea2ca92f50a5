//! Built-in functions (§3.5): dispatch by name and arity, argument casts,
//! and the functions themselves.
//!
//! Besides the spec's string and math functions this provides the casting
//! functions the TCK uses (`INT`, `BOOL`, `STRING`) and the `IS_INT` /
//! `IS_BOOL` predicates other CESQL engines offer alongside them.

use std::borrow::Cow;

use crate::error::{EvalError, EvalErrorKind};
use crate::value::{parse_boolean, parse_integer, Type, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Int,
    Bool,
    String,
    IsInt,
    IsBool,
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    Substring,
    SubstringWithLength,
    Abs,
}

impl Function {
    /// Finds the definition for a call; `name` is matched without regard
    /// to ASCII case. `None` means the call cannot be dispatched.
    pub(crate) fn resolve(name: &str, arity: usize) -> Option<Function> {
        use Function::*;
        let upper = name.to_ascii_uppercase();
        Some(match (upper.as_str(), arity) {
            ("INT", 1) => Int,
            ("BOOL", 1) => Bool,
            ("STRING", 1) => String,
            ("IS_INT", 1) => IsInt,
            ("IS_BOOL", 1) => IsBool,
            ("LENGTH", 1) => Length,
            ("CONCAT", _) => Concat,
            ("CONCAT_WS", n) if n >= 1 => ConcatWs,
            ("LOWER", 1) => Lower,
            ("UPPER", 1) => Upper,
            ("TRIM", 1) => Trim,
            ("LEFT", 2) => Left,
            ("RIGHT", 2) => Right,
            ("SUBSTRING", 2) => Substring,
            ("SUBSTRING", 3) => SubstringWithLength,
            ("ABS", 1) => Abs,
            _ => return None,
        })
    }

    pub(crate) fn return_type(self) -> Type {
        use Function::*;
        match self {
            Int | Length | Abs => Type::Integer,
            Bool | IsInt | IsBool => Type::Boolean,
            String | Concat | ConcatWs | Lower | Upper | Trim | Left | Right | Substring
            | SubstringWithLength => Type::String,
        }
    }

    /// Runs the function on already evaluated arguments (their count is
    /// the arity `resolve` accepted), casting each to its parameter type.
    pub(crate) fn apply<'a>(self, args: &mut [Val<'a>], errors: &mut Vec<EvalError>) -> Val<'a> {
        use Function::*;
        // Taking by index keeps this total even if the count were wrong.
        let mut arg = |i: usize| args.get_mut(i).map(std::mem::take).unwrap_or_default();
        match self {
            Int => Val::Int(arg(0).into_int(errors)),
            Bool => Val::Bool(arg(0).into_bool_explicit(errors)),
            String => Val::Str(arg(0).into_str()),
            IsInt => Val::Bool(parse_integer(&arg(0).into_str()).is_some()),
            IsBool => Val::Bool(parse_boolean(&arg(0).into_str()).is_some()),
            Length => {
                let count = arg(0).into_str().chars().count();
                Val::Int(i32::try_from(count).unwrap_or(i32::MAX))
            }
            Concat => Val::Str(Cow::Owned(join(args, ""))),
            ConcatWs => {
                let Some((delimiter, rest)) = args.split_first_mut() else {
                    return Type::String.zero();
                };
                let delimiter = std::mem::take(delimiter).into_str();
                Val::Str(Cow::Owned(join(rest, &delimiter)))
            }
            Lower => Val::Str(Cow::Owned(arg(0).into_str().to_lowercase())),
            Upper => Val::Str(Cow::Owned(arg(0).into_str().to_uppercase())),
            Trim => Val::Str(slice(arg(0).into_str(), |s| {
                let start = s.len() - s.trim_start().len();
                // An all-whitespace string trims to an empty range.
                start..s.trim_end().len().max(start)
            })),
            Left | Right => {
                let text = arg(0).into_str();
                let count = arg(1).into_int(errors);
                Val::Str(left_or_right(self == Left, text, count, errors))
            }
            Substring | SubstringWithLength => {
                let text = arg(0).into_str();
                let pos = arg(1).into_int(errors);
                let len = (self == SubstringWithLength).then(|| arg(2).into_int(errors));
                Val::Str(substring(text, pos, len, errors))
            }
            Abs => {
                let x = arg(0).into_int(errors);
                Val::Int(x.checked_abs().unwrap_or_else(|| {
                    errors.push(EvalError::new(
                        EvalErrorKind::Math,
                        "ABS(-2147483648) does not fit in 32 bits",
                    ));
                    i32::MAX
                }))
            }
        }
    }
}

fn join(parts: &mut [Val<'_>], delimiter: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter_mut().enumerate() {
        if i > 0 {
            out.push_str(delimiter);
        }
        out.push_str(&std::mem::take(part).into_str());
    }
    out
}

/// Cuts a byte range out of a string, staying borrowed when the input was.
fn slice<'a>(
    text: Cow<'a, str>,
    range: impl FnOnce(&str) -> std::ops::Range<usize>,
) -> Cow<'a, str> {
    let range = range(&text);
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.get(range).unwrap_or_default()),
        Cow::Owned(s) => Cow::Owned(s.get(range).unwrap_or_default().to_owned()),
    }
}

/// Byte offset of the `n`th character, or the string's length past its end.
fn char_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

fn left_or_right<'a>(
    left: bool,
    text: Cow<'a, str>,
    count: i32,
    errors: &mut Vec<EvalError>,
) -> Cow<'a, str> {
    let Ok(count) = usize::try_from(count) else {
        errors.push(EvalError::new(
            EvalErrorKind::FunctionEvaluation,
            format!(
                "{}() needs a character count of at least 0, got {count}",
                if left { "LEFT" } else { "RIGHT" }
            ),
        ));
        return text;
    };
    slice(text, |s| {
        if left {
            0..char_offset(s, count)
        } else {
            let skip = s.chars().count().saturating_sub(count);
            char_offset(s, skip)..s.len()
        }
    })
}

fn substring<'a>(
    text: Cow<'a, str>,
    pos: i32,
    len: Option<i32>,
    errors: &mut Vec<EvalError>,
) -> Cow<'a, str> {
    let chars = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
    let pos = i64::from(pos);
    let fail = |errors: &mut Vec<EvalError>, message: String| {
        errors.push(EvalError::new(EvalErrorKind::FunctionEvaluation, message));
        Cow::Borrowed("")
    };
    if pos > chars || pos < -chars {
        return fail(
            errors,
            format!("SUBSTRING() position {pos} is outside a string of {chars} characters"),
        );
    }
    if let Some(len) = len.filter(|len| *len < 0) {
        return fail(
            errors,
            format!("SUBSTRING() needs a length of at least 0, got {len}"),
        );
    }
    if pos == 0 {
        return Cow::Borrowed("");
    }
    // 0-based index of the first character; negative positions count from
    // the end, so -1 is the last character.
    let start = if pos > 0 { pos - 1 } else { chars + pos };
    let end = len.map_or(chars, |len| (start + i64::from(len)).min(chars));
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    slice(text, |s| char_offset(s, start)..char_offset(s, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Val<'static>>) -> (Val<'static>, Vec<EvalErrorKind>) {
        let function = Function::resolve(name, args.len()).expect("function exists");
        let mut args = args;
        let mut errors = Vec::new();
        let value = function.apply(&mut args, &mut errors);
        (value, errors.into_iter().map(|e| e.kind).collect())
    }

    fn s(text: &'static str) -> Val<'static> {
        Val::Str(Cow::Borrowed(text))
    }

    #[test]
    fn names_resolve_without_regard_to_case() {
        assert_eq!(Function::resolve("concat_ws", 2), Some(Function::ConcatWs));
        assert_eq!(Function::resolve("Abs", 1), Some(Function::Abs));
        assert_eq!(Function::resolve("ABS", 2), None);
        assert_eq!(Function::resolve("CONCAT_WS", 0), None);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert_eq!(call("LENGTH", vec![s("日本語")]).0, Val::Int(3));
    }

    #[test]
    fn trim_removes_unicode_whitespace_but_not_control_characters() {
        assert_eq!(call("TRIM", vec![s("\u{3000} a \u{a0}")]).0, s("a"));
        assert_eq!(call("TRIM", vec![s("\u{1}a\u{1}")]).0, s("\u{1}a\u{1}"));
    }

    #[test]
    fn trim_of_a_borrowed_string_stays_borrowed() {
        let (value, _) = call("TRIM", vec![s("  x  ")]);
        assert!(matches!(value, Val::Str(Cow::Borrowed("x"))));
    }

    #[test]
    fn left_and_right_count_unicode_characters() {
        assert_eq!(call("LEFT", vec![s("日本語"), Val::Int(2)]).0, s("日本"));
        assert_eq!(call("RIGHT", vec![s("日本語"), Val::Int(2)]).0, s("本語"));
        assert_eq!(call("RIGHT", vec![s("abc"), Val::Int(0)]).0, s(""));
    }

    #[test]
    fn substring_survives_extreme_positions_and_lengths() {
        let (value, errors) = call("SUBSTRING", vec![s("abc"), Val::Int(i32::MIN)]);
        assert_eq!(
            (value, errors),
            (s(""), vec![EvalErrorKind::FunctionEvaluation])
        );
        let (value, errors) = call(
            "SUBSTRING",
            vec![s("abc"), Val::Int(-1), Val::Int(i32::MAX)],
        );
        assert_eq!((value, errors), (s("c"), vec![]));
        let (value, errors) = call("SUBSTRING", vec![s("abc"), Val::Int(2), Val::Int(-1)]);
        assert_eq!(
            (value, errors),
            (s(""), vec![EvalErrorKind::FunctionEvaluation])
        );
    }

    #[test]
    fn substring_takes_the_last_character_at_the_length_position() {
        assert_eq!(call("SUBSTRING", vec![s("abc"), Val::Int(3)]).0, s("c"));
        assert_eq!(call("SUBSTRING", vec![s("abc"), Val::Int(-3)]).0, s("abc"));
    }

    #[test]
    fn abs_of_the_most_negative_integer_saturates_with_a_math_error() {
        let (value, errors) = call("ABS", vec![Val::Int(i32::MIN)]);
        assert_eq!(
            (value, errors),
            (Val::Int(i32::MAX), vec![EvalErrorKind::Math])
        );
    }

    #[test]
    fn is_int_and_is_bool_report_castability() {
        assert_eq!(call("IS_INT", vec![s("-12")]).0, Val::Bool(true));
        assert_eq!(call("IS_INT", vec![s("1e3")]).0, Val::Bool(false));
        assert_eq!(call("IS_BOOL", vec![s("False")]).0, Val::Bool(true));
        assert_eq!(call("IS_BOOL", vec![Val::Int(1)]).0, Val::Bool(false));
    }

    #[test]
    fn concat_ws_joins_cast_arguments() {
        let (value, _) = call("CONCAT_WS", vec![s("-"), Val::Int(1), Val::Bool(true)]);
        assert_eq!(value, s("1-true"));
    }
}
