//! The parsed form of an expression. Everything that can be decided
//! without an event (attribute names, function dispatch, LIKE patterns,
//! literal values) is decided at parse time and stored here.

use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use std::borrow::Cow;

use crate::functions::Function;
use crate::like::LikePattern;
use crate::value::{Type, Val};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Literal(Val<'static>),
    Attribute(Attribute),
    Exists(Attribute),
    Not(Box<Node>),
    Negate(Box<Node>),
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    Like {
        operand: Box<Node>,
        pattern: LikePattern,
        negated: bool,
    },
    In {
        operand: Box<Node>,
        set: Vec<Node>,
        negated: bool,
    },
    Call {
        function: Function,
        args: Vec<Node>,
    },
    /// A call no function definition accepts. Kept in the tree rather than
    /// rejected because the TCK expects a runtime MissingFunctionError.
    MissingFunction {
        name: String,
        arity: usize,
    },
}

impl Node {
    /// Adds the names of the attributes this node reads to `names` (each once).
    pub(crate) fn attributes<'a>(&'a self, names: &mut Vec<&'a str>) {
        let mut add = |attribute: &'a Attribute| {
            if !names.contains(&attribute.name()) {
                names.push(attribute.name());
            }
        };
        match self {
            Node::Literal(_) | Node::MissingFunction { .. } => {}
            Node::Attribute(attribute) | Node::Exists(attribute) => add(attribute),
            Node::Not(inner) | Node::Negate(inner) => inner.attributes(names),
            Node::Binary { left, right, .. } => {
                left.attributes(names);
                right.attributes(names);
            }
            Node::Like { operand, .. } => operand.attributes(names),
            Node::In { operand, set, .. } => {
                operand.attributes(names);
                for node in set {
                    node.attributes(names);
                }
            }
            Node::Call { args, .. } => {
                for node in args {
                    node.attributes(names);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    And,
    Or,
    Xor,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub(crate) fn return_type(self) -> Type {
        match self {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                Type::Integer
            }
            _ => Type::Boolean,
        }
    }
}

/// A context attribute, resolved from its (lowercased) name once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attribute {
    SpecVersion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataSchema,
    DataContentType,
    Extension(Box<str>),
}

impl Attribute {
    /// `name` must already be lowercase.
    pub(crate) fn from_name(name: &str) -> Attribute {
        match name {
            "specversion" => Attribute::SpecVersion,
            "id" => Attribute::Id,
            "source" => Attribute::Source,
            "type" => Attribute::Type,
            "subject" => Attribute::Subject,
            "time" => Attribute::Time,
            "dataschema" => Attribute::DataSchema,
            "datacontenttype" => Attribute::DataContentType,
            other => Attribute::Extension(other.into()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Attribute::SpecVersion => "specversion",
            Attribute::Id => "id",
            Attribute::Source => "source",
            Attribute::Type => "type",
            Attribute::Subject => "subject",
            Attribute::Time => "time",
            Attribute::DataSchema => "dataschema",
            Attribute::DataContentType => "datacontenttype",
            Attribute::Extension(name) => name,
        }
    }

    /// The attribute's value, borrowed from the event where possible.
    /// Non-primitive CloudEvents types (URI, timestamp) become strings
    /// (§3.2), as do integer extensions outside the 32-bit range.
    pub(crate) fn lookup<'e>(&self, event: &'e Event) -> Option<Val<'e>> {
        let borrowed = |s: &'e str| Val::Str(Cow::Borrowed(s));
        Some(match self {
            // `specversion()` returns an owned enum, so name the text here
            // to keep it borrowable.
            Attribute::SpecVersion => borrowed(match event.specversion() {
                SpecVersion::V03 => "0.3",
                SpecVersion::V10 => "1.0",
            }),
            Attribute::Id => borrowed(event.id()),
            Attribute::Source => borrowed(event.source().as_str()),
            Attribute::Type => borrowed(event.ty()),
            Attribute::Subject => borrowed(event.subject()?),
            // Same rendering as the SDK's JSON format, so expressions
            // compare against what is seen on the wire. The SDK keeps time
            // in UTC, so an original offset is not recoverable.
            Attribute::Time => Val::Str(Cow::Owned(
                event
                    .time()?
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )),
            Attribute::DataSchema => match event.extension(crate::DATASCHEMA_AS_SENT_EXTENSION) {
                Some(ExtensionValue::String(as_sent)) => borrowed(as_sent),
                _ => borrowed(event.dataschema()?.as_str()),
            },
            Attribute::DataContentType => borrowed(event.datacontenttype()?),
            Attribute::Extension(name) => match event.extension(name)? {
                ExtensionValue::String(s) => borrowed(s),
                ExtensionValue::Boolean(b) => Val::Bool(*b),
                ExtensionValue::Integer(i) => match i32::try_from(*i) {
                    Ok(i) => Val::Int(i),
                    Err(_) => Val::Str(Cow::Owned(i.to_string())),
                },
            },
        })
    }

    /// Like `lookup(..).is_some()`, without rendering the value.
    pub(crate) fn exists(&self, event: &Event) -> bool {
        match self {
            Attribute::SpecVersion | Attribute::Id | Attribute::Source | Attribute::Type => true,
            Attribute::Subject => event.subject().is_some(),
            Attribute::Time => event.time().is_some(),
            Attribute::DataSchema => event.dataschema().is_some(),
            Attribute::DataContentType => event.datacontenttype().is_some(),
            Attribute::Extension(name) => event.extension(name).is_some(),
        }
    }
}
