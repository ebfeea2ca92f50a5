//! Recursive descent over the token list, with precedence climbing for the
//! binary operators. The grammar it accepts, by §3.6 precedence, loosest
//! first:
//!
//! ```text
//! expression := comparison (("AND" | "OR" | "XOR") comparison)*
//! comparison := additive (("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive)*
//! additive   := term (("+" | "-") term)*
//! term       := postfix (("*" | "/" | "%") postfix)*
//! postfix    := unary ("NOT"? "LIKE" string | "NOT"? "IN" "(" expression ("," expression)* ")")*
//! unary      := "NOT" unary | "-" unary | "+"? integer | primary
//! primary    := literal | "EXISTS" identifier | name "(" arguments? ")" | identifier | "(" expression ")"
//! ```
//!
//! Operators of equal precedence group to the left (§3.6 "left to right"),
//! so `a OR b AND c` is `(a OR b) AND c`. Unary operators bind tighter
//! than every binary operator, LIKE and IN, as §3.6 orders them: `NOT a = b`
//! is `(NOT a) = b`.

use std::borrow::Cow;

use crate::ast::{Attribute, BinaryOp, Node};
use crate::error::ParseError;
use crate::functions::Function;
use crate::lexer::{tokenize, Token, TokenKind};
use crate::like::LikePattern;
use crate::value::{quoted, Val};

/// How deeply parentheses, unary operators, calls and sets may nest. Each
/// level is a few parser stack frames, so this bounds parser recursion.
pub(crate) const MAX_NESTING: usize = 256;

/// How deep the syntax tree may get, counting operator chains like
/// `1 + 1 + ...` that the parser builds in a loop. Evaluation and drop
/// recurse over the tree, so this bounds their stack use.
pub(crate) const MAX_TREE_DEPTH: usize = 1024;

pub(crate) fn parse(src: &str) -> Result<Node, ParseError> {
    let mut parser = Parser {
        src,
        tokens: tokenize(src)?,
        pos: 0,
        nesting: 0,
    };
    let (node, _) = parser.expression()?;
    if parser.peek().kind != TokenKind::Eof {
        return Err(parser.expected("an operator or the end of the expression"));
    }
    Ok(node)
}

/// A parsed subtree and its depth.
type Parsed = (Node, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Xor,
    Not,
    Like,
    In,
    Exists,
    True,
    False,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        const KEYWORDS: [(&str, Keyword); 9] = [
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("XOR", Keyword::Xor),
            ("NOT", Keyword::Not),
            ("LIKE", Keyword::Like),
            ("IN", Keyword::In),
            ("EXISTS", Keyword::Exists),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
        ];
        KEYWORDS
            .iter()
            .find(|(text, _)| word.eq_ignore_ascii_case(text))
            .map(|(_, keyword)| *keyword)
    }
}

struct Parser<'s> {
    src: &'s str,
    /// Always ends with `Eof`, and `pos` never moves past it.
    tokens: Vec<Token<'s>>,
    pos: usize,
    nesting: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> &Token<'s> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token<'s> {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)]
    }

    fn bump(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn keyword_at(&self, ahead: usize) -> Option<Keyword> {
        match self.peek_at(ahead).kind {
            TokenKind::Word(word) => Keyword::from_word(word),
            _ => None,
        }
    }

    fn keyword(&self) -> Option<Keyword> {
        self.keyword_at(0)
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(self.src, offset, message)
    }

    /// "expected X after 'prev', found 'next'", at the current token.
    fn expected(&self, what: &str) -> ParseError {
        let mut message = format!("expected {what}");
        if let Some(prev) = self.pos.checked_sub(1).map(|i| &self.tokens[i]) {
            message.push_str(" after ");
            message.push_str(&quoted(&self.src[prev.start..prev.end]));
        }
        let current = self.peek();
        if current.kind != TokenKind::Eof {
            message.push_str(", found ");
            message.push_str(&quoted(&self.src[current.start..current.end]));
        }
        self.error_at(current.start, message)
    }

    /// Enters one nesting level, refusing to go past the limit. Callers
    /// call [`Parser::leave`] on success; after an error the parse is
    /// over, so the count no longer matters.
    fn enter(&mut self) -> Result<(), ParseError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.error_at(
                self.peek().start,
                format!("expression nests deeper than {MAX_NESTING} levels"),
            ));
        }
        self.nesting += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// Wraps children into a node one level deeper than the deepest child.
    fn node(&self, node: Node, child_depth: usize) -> Result<Parsed, ParseError> {
        let depth = child_depth + 1;
        if depth > MAX_TREE_DEPTH {
            return Err(self.error_at(
                self.peek().start,
                format!("expression is more than {MAX_TREE_DEPTH} operators deep"),
            ));
        }
        Ok((node, depth))
    }

    fn binary(&self, op: BinaryOp, left: Parsed, right: Parsed) -> Result<Parsed, ParseError> {
        let depth = left.1.max(right.1);
        let node = Node::Binary {
            op,
            left: Box::new(left.0),
            right: Box::new(right.0),
        };
        self.node(node, depth)
    }

    /// The binary operator at the current token and its precedence level
    /// (higher binds tighter).
    fn binary_operator(&self) -> Option<(BinaryOp, u8)> {
        Some(match self.peek().kind {
            TokenKind::Star => (BinaryOp::Mul, 3),
            TokenKind::Slash => (BinaryOp::Div, 3),
            TokenKind::Percent => (BinaryOp::Rem, 3),
            TokenKind::Plus => (BinaryOp::Add, 2),
            TokenKind::Minus => (BinaryOp::Sub, 2),
            TokenKind::Eq => (BinaryOp::Eq, 1),
            TokenKind::NotEq | TokenKind::Diamond => (BinaryOp::NotEq, 1),
            TokenKind::Lt => (BinaryOp::Lt, 1),
            TokenKind::Le => (BinaryOp::Le, 1),
            TokenKind::Gt => (BinaryOp::Gt, 1),
            TokenKind::Ge => (BinaryOp::Ge, 1),
            _ => match self.keyword()? {
                Keyword::And => (BinaryOp::And, 0),
                Keyword::Or => (BinaryOp::Or, 0),
                Keyword::Xor => (BinaryOp::Xor, 0),
                _ => return None,
            },
        })
    }

    fn expression(&mut self) -> Result<Parsed, ParseError> {
        self.binary_expression(0)
    }

    /// Precedence climbing over the binary levels. Written as one function
    /// rather than one per level so that each parenthesis costs few stack
    /// frames; right operands recurse at most once per level.
    fn binary_expression(&mut self, min_level: u8) -> Result<Parsed, ParseError> {
        let operand = self.unary()?;
        let mut left = self.postfix(operand)?;
        while let Some((op, level)) = self.binary_operator() {
            if level < min_level {
                break;
            }
            self.bump();
            // `level + 1`: an operator of the same level ends the right
            // operand, which makes every level group to the left.
            let right = self.binary_expression(level + 1)?;
            left = self.binary(op, left, right)?;
        }
        Ok(left)
    }

    /// Applies any LIKE / IN operators following `operand`.
    fn postfix(&mut self, mut operand: Parsed) -> Result<Parsed, ParseError> {
        loop {
            let negated = self.keyword() == Some(Keyword::Not);
            if negated {
                self.bump();
            }
            operand = match self.keyword() {
                Some(Keyword::Like) => {
                    self.bump();
                    let TokenKind::Str(pattern) = &self.peek().kind else {
                        return Err(self.expected("a string literal as the LIKE pattern"));
                    };
                    let pattern = LikePattern::compile(pattern);
                    self.bump();
                    let node = Node::Like {
                        operand: Box::new(operand.0),
                        pattern,
                        negated,
                    };
                    self.node(node, operand.1)?
                }
                Some(Keyword::In) => {
                    self.bump();
                    if self.peek().kind != TokenKind::LParen {
                        return Err(self.expected("'(' to open the IN set"));
                    }
                    self.bump();
                    // Empty sets are not allowed, so no check for ')' here.
                    self.enter()?;
                    let (set, set_depth) = self.comma_separated()?;
                    self.leave();
                    let node = Node::In {
                        operand: Box::new(operand.0),
                        set,
                        negated,
                    };
                    self.node(node, operand.1.max(set_depth))?
                }
                _ if negated => return Err(self.expected("LIKE or IN")),
                _ => return Ok(operand),
            };
        }
    }

    /// Items up to and including the closing parenthesis.
    fn comma_separated(&mut self) -> Result<(Vec<Node>, usize), ParseError> {
        let mut items = Vec::new();
        let mut depth = 0;
        loop {
            let (item, item_depth) = self.expression()?;
            items.push(item);
            depth = depth.max(item_depth);
            match self.peek().kind {
                TokenKind::Comma => self.bump(),
                TokenKind::RParen => {
                    self.bump();
                    return Ok((items, depth));
                }
                _ => return Err(self.expected("',' or ')'")),
            }
        }
    }

    // `unary` and `primary` only dispatch: they sit on the recursion path
    // of every parenthesis, so their stack frames are kept small.
    fn unary(&mut self) -> Result<Parsed, ParseError> {
        match self.peek().kind {
            TokenKind::Minus => self.minus(),
            TokenKind::Plus => self.plus(),
            _ if self.keyword() == Some(Keyword::Not) => self.not(),
            _ => self.primary(),
        }
    }

    fn not(&mut self) -> Result<Parsed, ParseError> {
        self.bump();
        self.enter()?;
        let operand = self.unary()?;
        self.leave();
        self.node(Node::Not(Box::new(operand.0)), operand.1)
    }

    fn minus(&mut self) -> Result<Parsed, ParseError> {
        let sign = self.peek().start;
        self.bump();
        // Folding the sign into the literal is what lets -2147483648 be
        // written at all: 2147483648 alone does not fit in 32 bits.
        if let TokenKind::Integer(digits) = self.peek().kind {
            self.bump();
            return Ok((integer_literal(self.src, sign, digits, true)?, 1));
        }
        self.enter()?;
        let operand = self.unary()?;
        self.leave();
        self.node(Node::Negate(Box::new(operand.0)), operand.1)
    }

    /// §2.2 allows a sign on integer literals, but there is no unary plus
    /// operator.
    fn plus(&mut self) -> Result<Parsed, ParseError> {
        let sign = self.peek().start;
        self.bump();
        let TokenKind::Integer(digits) = self.peek().kind else {
            return Err(self.expected("an integer literal"));
        };
        self.bump();
        Ok((integer_literal(self.src, sign, digits, false)?, 1))
    }

    fn primary(&mut self) -> Result<Parsed, ParseError> {
        if self.peek().kind == TokenKind::LParen {
            self.parenthesized()
        } else {
            self.atom()
        }
    }

    fn parenthesized(&mut self) -> Result<Parsed, ParseError> {
        self.bump();
        self.enter()?;
        let inner = self.binary_expression(0)?;
        self.leave();
        if self.peek().kind != TokenKind::RParen {
            return Err(self.expected("')'"));
        }
        self.bump();
        Ok(inner)
    }

    fn atom(&mut self) -> Result<Parsed, ParseError> {
        let start = self.peek().start;
        match &self.peek().kind {
            &TokenKind::Integer(digits) => {
                self.bump();
                Ok((integer_literal(self.src, start, digits, false)?, 1))
            }
            TokenKind::Str(text) => {
                let literal = Node::Literal(Val::Str(Cow::Owned(text.clone())));
                self.bump();
                Ok((literal, 1))
            }
            &TokenKind::Word(word) => self.word(word, start),
            _ => Err(self.expected("an expression")),
        }
    }

    fn word(&mut self, word: &'s str, start: usize) -> Result<Parsed, ParseError> {
        match Keyword::from_word(word) {
            Some(Keyword::True) => {
                self.bump();
                Ok((Node::Literal(Val::Bool(true)), 1))
            }
            Some(Keyword::False) => {
                self.bump();
                Ok((Node::Literal(Val::Bool(false)), 1))
            }
            Some(Keyword::Exists) => {
                self.bump();
                let token = self.peek();
                let name = match token.kind {
                    TokenKind::Word(name) if Keyword::from_word(name).is_none() => name,
                    _ => return Err(self.expected("an attribute name")),
                };
                let attribute = self.attribute(name, token.start)?;
                self.bump();
                Ok((Node::Exists(attribute), 1))
            }
            Some(_) => Err(self.expected("an expression")),
            None if self.peek_at(1).kind == TokenKind::LParen => self.call(word, start),
            None => {
                let attribute = self.attribute(word, start)?;
                self.bump();
                Ok((Node::Attribute(attribute), 1))
            }
        }
    }

    /// §2.2 restricts identifiers to lowercase letters and digits; any case
    /// is accepted because the TCK writes `EXISTS SOURCE`.
    fn attribute(&self, name: &str, start: usize) -> Result<Attribute, ParseError> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.error_at(
                start,
                format!(
                    "invalid attribute name {}: only letters and digits are allowed",
                    quoted(name)
                ),
            ));
        }
        Ok(Attribute::from_name(&name.to_ascii_lowercase()))
    }

    fn call(&mut self, name: &'s str, start: usize) -> Result<Parsed, ParseError> {
        // §2.4: a letter, then letters and underscores.
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !valid {
            return Err(self.error_at(
                start,
                format!(
                    "invalid function name {}: only letters and underscores are allowed",
                    quoted(name)
                ),
            ));
        }
        self.bump(); // name
        self.bump(); // (
        let (args, depth) = if self.peek().kind == TokenKind::RParen {
            self.bump();
            (Vec::new(), 0)
        } else {
            self.enter()?;
            let args = self.comma_separated()?;
            self.leave();
            args
        };
        let node = match Function::resolve(name, args.len()) {
            Some(function) => Node::Call { function, args },
            None => Node::MissingFunction {
                name: name.to_owned(),
                arity: args.len(),
            },
        };
        self.node(node, depth)
    }
}

/// Builds an integer literal from its digits, refusing anything outside
/// the 32-bit range (§2.2). `start` is where the literal, sign included,
/// begins.
fn integer_literal(
    src: &str,
    start: usize,
    digits: &str,
    negative: bool,
) -> Result<Node, ParseError> {
    let magnitude = digits.bytes().try_fold(0i64, |acc, digit| {
        acc.checked_mul(10)?
            .checked_add(i64::from(digit - b'0'))
            .filter(|v| *v <= 1 << 31)
    });
    let value = magnitude
        .map(|m| if negative { -m } else { m })
        .and_then(|v| i32::try_from(v).ok());
    match value {
        Some(v) => Ok(Node::Literal(Val::Int(v))),
        None => Err(ParseError::new(
            src,
            start,
            format!(
                "integer literal {}{} does not fit in 32 bits",
                if negative { "-" } else { "" },
                quoted(digits)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse(src).unwrap_err().to_string()
    }

    fn shape(src: &str) -> String {
        fn render(node: &Node) -> String {
            match node {
                Node::Literal(Val::Int(i)) => i.to_string(),
                Node::Literal(Val::Bool(b)) => b.to_string(),
                Node::Literal(Val::Str(s)) => format!("'{s}'"),
                Node::Attribute(a) => a.name().to_owned(),
                Node::Exists(a) => format!("(EXISTS {})", a.name()),
                Node::Not(n) => format!("(NOT {})", render(n)),
                Node::Negate(n) => format!("(- {})", render(n)),
                Node::Binary { op, left, right } => {
                    format!("({} {op:?} {})", render(left), render(right))
                }
                Node::Like {
                    operand, negated, ..
                } => {
                    format!(
                        "({} {}LIKE)",
                        render(operand),
                        if *negated { "NOT " } else { "" }
                    )
                }
                Node::In {
                    operand, negated, ..
                } => format!(
                    "({} {}IN)",
                    render(operand),
                    if *negated { "NOT " } else { "" }
                ),
                Node::Call { function, args } => format!(
                    "{function:?}({})",
                    args.iter().map(render).collect::<Vec<_>>().join(", ")
                ),
                Node::MissingFunction { name, arity } => format!("{name}/{arity}?"),
            }
        }
        render(&parse(src).unwrap())
    }

    #[test]
    fn multiplication_binds_tighter_than_addition() {
        assert_eq!(shape("4 * 2 + 4 / 2"), "((4 Mul 2) Add (4 Div 2))");
    }

    #[test]
    fn logic_operators_share_a_level_and_group_left() {
        assert_eq!(shape("a OR b AND c"), "((a Or b) And c)");
        assert_eq!(shape("a AND b XOR c"), "((a And b) Xor c)");
    }

    #[test]
    fn comparison_binds_tighter_than_logic() {
        assert_eq!(shape("a = 1 AND b < 2"), "((a Eq 1) And (b Lt 2))");
    }

    #[test]
    fn unary_operators_bind_tighter_than_binary_ones() {
        assert_eq!(shape("NOT a = b"), "((NOT a) Eq b)");
        assert_eq!(shape("-a + 1"), "((- a) Add 1)");
        assert_eq!(shape("NOT EXISTS time"), "(NOT (EXISTS time))");
    }

    #[test]
    fn like_and_in_bind_tighter_than_binary_operators() {
        assert_eq!(shape("a = b LIKE 'x'"), "(a Eq (b LIKE))");
        assert_eq!(shape("a NOT IN (1, 2) OR b"), "((a NOT IN) Or b)");
    }

    #[test]
    fn minus_before_a_literal_folds_into_it() {
        assert_eq!(shape("-2147483648"), "-2147483648");
        assert_eq!(shape("--10"), "(- -10)");
        assert_eq!(shape("4 -1"), "(4 Sub 1)");
        assert_eq!(shape("+7"), "7");
    }

    #[test]
    fn keywords_and_names_ignore_case() {
        assert_eq!(
            shape("tRuE aNd Exists SOURCE"),
            "(true And (EXISTS source))"
        );
        assert_eq!(shape("concat_ws(',', MyExt)"), "ConcatWs(',', myext)");
    }

    #[test]
    fn unknown_functions_parse_into_missing_function_nodes() {
        assert_eq!(shape("nope(1, 2)"), "nope/2?");
        assert_eq!(shape("CONCAT_WS()"), "CONCAT_WS/0?");
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        assert_eq!(
            err("a AND "),
            "at column 7: expected an expression after 'AND'"
        );
        assert_eq!(err("ABC("), "at column 5: expected an expression after '('");
        assert_eq!(
            err("x LIKE 123"),
            "at column 8: expected a string literal as the LIKE pattern after 'LIKE', found '123'"
        );
        assert_eq!(err(""), "at column 1: expected an expression");
        assert_eq!(
            err("a b"),
            "at column 3: expected an operator or the end of the expression after 'a', found 'b'"
        );
        assert_eq!(
            err("a NOT b"),
            "at column 7: expected LIKE or IN after 'NOT', found 'b'"
        );
        assert_eq!(
            err("a IN ()"),
            "at column 7: expected an expression after '(', found ')'"
        );
        assert_eq!(err("(1"), "at column 3: expected ')' after '1'");
    }

    #[test]
    fn huge_integers_are_parse_errors() {
        assert_eq!(
            err("2147483648"),
            "at column 1: integer literal '2147483648' does not fit in 32 bits"
        );
        assert!(err("-2147483649").contains("does not fit"));
        assert!(err(&"9".repeat(400)).contains("does not fit"));
    }

    #[test]
    fn identifiers_with_underscores_are_rejected() {
        assert_eq!(
            err("my_ext = 1"),
            "at column 1: invalid attribute name 'my_ext': only letters and digits are allowed"
        );
        assert!(err("abc1(2)").contains("invalid function name"));
    }

    #[test]
    fn exists_needs_an_attribute_name() {
        assert!(err("EXISTS 'a'").contains("expected an attribute name"));
        assert!(err("EXISTS AND").contains("expected an attribute name"));
    }

    #[test]
    fn deep_parenthesis_nesting_is_a_parse_error_not_a_stack_overflow() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(err(&deep).contains("nests deeper than 256 levels"));
        let fine = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn deep_unary_nesting_is_a_parse_error() {
        assert!(err(&"NOT ".repeat(100_000)).contains("nests deeper"));
        assert!(err(&format!("{}a", "-".repeat(100_000))).contains("nests deeper"));
    }

    #[test]
    fn long_operator_chains_are_capped() {
        let long = vec!["1"; 5000].join(" + ");
        assert!(err(&long).contains("more than 1024 operators deep"));
    }
}
