//! Tree-walking evaluation over one event.
//!
//! Errors are pushed onto a list that travels along, and every operator
//! still produces a value (§3.3). One rule decides that value when things
//! go wrong, and it is what the TCK encodes:
//!
//! * if evaluating an operand (or argument) added an error, the operator
//!   does not run; it yields the zero value of its return type and adds no
//!   error of its own. So `1 / missing` is `0` with only a missing
//!   attribute error, and `true AND (1 != 1 / 0)` is `false`;
//! * otherwise the operator runs, and errors it raises itself (a failed
//!   implicit cast, division by zero) come with the value it defines:
//!   a failed cast continues with the target type's zero value, so
//!   `NOT 10` is `true` with a cast error.
//!
//! An operand's evaluation includes everything beneath it, so the zero
//! value climbs all the way up: `NOT (missing = 1)` is `false`.
//!
//! "Added an error" is detected by comparing the list's length before and
//! after, which costs nothing when no error occurs.

use cloudevents::Event;

use crate::ast::{Attribute, BinaryOp, Node};
use crate::error::{EvalError, EvalErrorKind};
use crate::functions::Function;
use crate::value::Val;

/// The argument count up to which calls evaluate into a stack array.
const INLINE_ARGS: usize = 3;

pub(crate) fn eval<'a>(node: &'a Node, event: &'a Event, errors: &mut Vec<EvalError>) -> Val<'a> {
    // Every arm delegates: eval recurses once per tree level, so its own
    // stack frame is kept small (this matters most in debug builds).
    match node {
        Node::Literal(value) => borrow(value),
        Node::Attribute(attribute) => attribute
            .lookup(event)
            .unwrap_or_else(|| missing_attribute(attribute, errors)),
        Node::Exists(attribute) => Val::Bool(attribute.exists(event)),
        Node::Not(operand) => match eval_operand(operand, event, errors) {
            Some(value) => Val::Bool(!value.into_bool(errors)),
            None => Val::Bool(false),
        },
        Node::Negate(operand) => match eval_operand(operand, event, errors) {
            Some(value) => negate(value, errors),
            None => Val::Int(0),
        },
        Node::Binary { op, left, right } => binary(*op, left, right, event, errors),
        Node::Like {
            operand,
            pattern,
            negated,
        } => match eval_operand(operand, event, errors) {
            Some(value) => Val::Bool(pattern.matches(&value.into_str()) != *negated),
            None => Val::Bool(false),
        },
        Node::In {
            operand,
            set,
            negated,
        } => in_set(operand, set, *negated, event, errors),
        Node::Call { function, args } => call(*function, args, event, errors),
        Node::MissingFunction { name, arity } => missing_function(name, *arity, errors),
    }
}

/// Evaluates an operand; `None` if doing so added an error, in which case
/// the consuming operator yields its zero value.
fn eval_operand<'a>(
    node: &'a Node,
    event: &'a Event,
    errors: &mut Vec<EvalError>,
) -> Option<Val<'a>> {
    let mark = errors.len();
    let value = eval(node, event, errors);
    (errors.len() == mark).then_some(value)
}

/// A literal as a value borrowing the expression's text.
fn borrow<'a>(value: &'a Val<'static>) -> Val<'a> {
    match value {
        Val::Bool(b) => Val::Bool(*b),
        Val::Int(i) => Val::Int(*i),
        Val::Str(s) => Val::Str(std::borrow::Cow::Borrowed(s)),
    }
}

/// A bare attribute's return type cannot be known, so it is taken to be
/// Boolean (§3.2).
#[cold]
fn missing_attribute<'a>(attribute: &Attribute, errors: &mut Vec<EvalError>) -> Val<'a> {
    errors.push(EvalError::new(
        EvalErrorKind::MissingAttribute,
        format!("the event has no attribute '{}'", attribute.name()),
    ));
    Val::Bool(false)
}

#[cold]
fn missing_function<'a>(name: &str, arity: usize, errors: &mut Vec<EvalError>) -> Val<'a> {
    errors.push(EvalError::new(
        EvalErrorKind::MissingFunction,
        format!(
            "no function {name} takes {arity} argument{}",
            if arity == 1 { "" } else { "s" }
        ),
    ));
    Val::Bool(false)
}

fn overflow(operation: std::fmt::Arguments<'_>) -> EvalError {
    EvalError::new(
        EvalErrorKind::Math,
        format!("{operation} does not fit in 32 bits"),
    )
}

fn negate<'a>(value: Val<'a>, errors: &mut Vec<EvalError>) -> Val<'a> {
    let x = value.into_int(errors);
    Val::Int(x.checked_neg().unwrap_or_else(|| {
        errors.push(overflow(format_args!("-({x})")));
        i32::MAX
    }))
}

fn binary<'a>(
    op: BinaryOp,
    left: &'a Node,
    right: &'a Node,
    event: &'a Event,
    errors: &mut Vec<EvalError>,
) -> Val<'a> {
    match op {
        BinaryOp::And => logical(true, left, right, event, errors),
        BinaryOp::Or => logical(false, left, right, event, errors),
        _ => {
            let mark = errors.len();
            let l = eval(left, event, errors);
            let r = eval(right, event, errors);
            if errors.len() > mark {
                return op.return_type().zero();
            }
            apply_binary(op, l, r, errors)
        }
    }
}

/// AND / OR, short-circuited (§3.4.2): the right operand only runs when
/// the left one leaves the result open.
fn logical<'a>(
    is_and: bool,
    left: &'a Node,
    right: &'a Node,
    event: &'a Event,
    errors: &mut Vec<EvalError>,
) -> Val<'a> {
    let Some(left) = eval_operand(left, event, errors) else {
        return Val::Bool(false);
    };
    let left = left.into_bool(errors);
    // false decides an AND, true decides an OR.
    if left != is_and {
        return Val::Bool(left);
    }
    match eval_operand(right, event, errors) {
        Some(right) => Val::Bool(right.into_bool(errors)),
        None => Val::Bool(false),
    }
}

// Not inlined, like `in_set` and `call`: eval recurses once per tree level,
// and their locals would otherwise enlarge every one of its frames.
/// Every binary operator but AND / OR, on operands evaluated without error.
#[inline(never)]
fn apply_binary<'a>(op: BinaryOp, l: Val<'a>, r: Val<'a>, errors: &mut Vec<EvalError>) -> Val<'a> {
    match op {
        BinaryOp::Xor => {
            let l = l.into_bool(errors);
            Val::Bool(l ^ r.into_bool(errors))
        }
        BinaryOp::Eq | BinaryOp::NotEq => {
            // `=` is overloaded for all three types; the right operand's
            // type picks the definition and the left one is cast (§3.7).
            let l = l.cast(r.ty(), errors);
            Val::Bool((l == r) == (op == BinaryOp::Eq))
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let l = l.into_int(errors);
            let r = r.into_int(errors);
            Val::Bool(match op {
                BinaryOp::Lt => l < r,
                BinaryOp::Le => l <= r,
                BinaryOp::Gt => l > r,
                _ => l >= r,
            })
        }
        _ => {
            let l = l.into_int(errors);
            let r = r.into_int(errors);
            Val::Int(arithmetic(op, l, r, errors))
        }
    }
}

/// Integer arithmetic. Overflow saturates and raises a math error, the way
/// §3.5.2 defines it for `ABS`.
fn arithmetic(op: BinaryOp, l: i32, r: i32, errors: &mut Vec<EvalError>) -> i32 {
    let (checked, saturated, symbol) = match op {
        BinaryOp::Add => (l.checked_add(r), l.saturating_add(r), "+"),
        BinaryOp::Sub => (l.checked_sub(r), l.saturating_sub(r), "-"),
        BinaryOp::Mul => (l.checked_mul(r), l.saturating_mul(r), "*"),
        BinaryOp::Div | BinaryOp::Rem if r == 0 => {
            errors.push(EvalError::new(
                EvalErrorKind::Math,
                format!(
                    "division by zero in {l} {} 0",
                    if op == BinaryOp::Div { "/" } else { "%" }
                ),
            ));
            return 0;
        }
        // Only i32::MIN / -1 overflows; its true value is one past i32::MAX.
        BinaryOp::Div => (l.checked_div(r), i32::MAX, "/"),
        // i32::MIN % -1 is mathematically 0, which wrapping_rem returns.
        _ => return l.wrapping_rem(r),
    };
    checked.unwrap_or_else(|| {
        errors.push(overflow(format_args!("{l} {symbol} {r}")));
        saturated
    })
}

/// `x IN (y1, ...)`: each element is cast to x's type and compared as `=`
/// would (§3.4.5). All elements are evaluated so that an error anywhere in
/// the set is reported whether or not an earlier element matched.
#[inline(never)]
fn in_set<'a>(
    operand: &'a Node,
    set: &'a [Node],
    negated: bool,
    event: &'a Event,
    errors: &mut Vec<EvalError>,
) -> Val<'a> {
    let mark = errors.len();
    let x = eval(operand, event, errors);
    let mut failed = errors.len() > mark;
    let mut found = false;
    for element in set {
        let before = errors.len();
        let y = eval(element, event, errors);
        if errors.len() > before {
            failed = true;
        }
        if failed || found {
            continue;
        }
        found = y.cast(x.ty(), errors) == x;
    }
    if failed {
        return Val::Bool(false);
    }
    Val::Bool(found != negated)
}

#[inline(never)]
fn call<'a>(
    function: Function,
    args: &'a [Node],
    event: &'a Event,
    errors: &mut Vec<EvalError>,
) -> Val<'a> {
    let mark = errors.len();
    if args.len() <= INLINE_ARGS {
        let mut values: [Val<'a>; INLINE_ARGS] = Default::default();
        for (slot, arg) in values.iter_mut().zip(args) {
            *slot = eval(arg, event, errors);
        }
        if errors.len() > mark {
            return function.return_type().zero();
        }
        return function.apply(&mut values[..args.len()], errors);
    }
    let mut values: Vec<Val<'a>> = args.iter().map(|arg| eval(arg, event, errors)).collect();
    if errors.len() > mark {
        return function.return_type().zero();
    }
    function.apply(&mut values, errors)
}
