//! Turns source text into tokens. Words are not classified here: whether
//! `like` is a keyword, `abs` a function or `hop` an attribute depends on
//! where the word stands, which is the parser's business.

use crate::error::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind<'s> {
    /// A run of ASCII letters, digits and underscores that is not all digits.
    Word(&'s str),
    /// A run of ASCII digits; the sign, if any, is a separate token.
    Integer(&'s str),
    /// A string literal, escapes already resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    NotEq,
    Diamond,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'s> {
    pub(crate) kind: TokenKind<'s>,
    /// Byte offset of the token's first character.
    pub(crate) start: usize,
    /// Byte offset just past the token; equals `start` for `Eof`.
    pub(crate) end: usize,
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let kind = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => single(&mut i, TokenKind::LParen),
            b')' => single(&mut i, TokenKind::RParen),
            b',' => single(&mut i, TokenKind::Comma),
            b'+' => single(&mut i, TokenKind::Plus),
            b'-' => single(&mut i, TokenKind::Minus),
            b'*' => single(&mut i, TokenKind::Star),
            b'/' => single(&mut i, TokenKind::Slash),
            b'%' => single(&mut i, TokenKind::Percent),
            b'=' => single(&mut i, TokenKind::Eq),
            b'!' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    TokenKind::NotEq
                } else {
                    return Err(ParseError::new(src, i + 1, "expected '=' after '!'"));
                }
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'=') => double(&mut i, TokenKind::Le),
                Some(b'>') => double(&mut i, TokenKind::Diamond),
                _ => single(&mut i, TokenKind::Lt),
            },
            b'>' => match bytes.get(i + 1) {
                Some(b'=') => double(&mut i, TokenKind::Ge),
                _ => single(&mut i, TokenKind::Gt),
            },
            b'\'' | b'"' => {
                let (text, next) = string_literal(src, i)?;
                i = next;
                TokenKind::Str(text)
            }
            b if is_word_byte(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                let word = &src[start..i];
                if word.bytes().all(|b| b.is_ascii_digit()) {
                    TokenKind::Integer(word)
                } else {
                    TokenKind::Word(word)
                }
            }
            _ => {
                // `start` is a char boundary: every branch above consumes
                // whole characters, and only ASCII reaches them.
                let c = src[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(ParseError::new(
                    src,
                    start,
                    format!("unexpected character '{}'", c.escape_debug()),
                ));
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(tokens)
}

fn single<'s>(i: &mut usize, kind: TokenKind<'s>) -> TokenKind<'s> {
    *i += 1;
    kind
}

fn double<'s>(i: &mut usize, kind: TokenKind<'s>) -> TokenKind<'s> {
    *i += 2;
    kind
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads a quoted literal starting at `open` (the quote). A backslash
/// always pairs with the next character so that `\'` cannot close the
/// literal, but only a backslash before the literal's own quote character
/// is an escape (§2.2); any other pair stays verbatim, which keeps LIKE
/// escapes such as `\%` intact.
fn string_literal(src: &str, open: usize) -> Result<(String, usize), ParseError> {
    let quote = src.as_bytes()[open] as char;
    let mut text = String::new();
    let mut chars = src[open + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, next)) if next == quote => text.push(quote),
                Some((_, next)) => {
                    text.push('\\');
                    text.push(next);
                }
                None => break,
            },
            c if c == quote => return Ok((text, open + 1 + offset + 1)),
            c => text.push(c),
        }
    }
    Err(ParseError::new(
        src,
        open,
        format!("unterminated string literal, expected a closing {quote}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind<'_>> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn operators_take_the_longest_match() {
        use TokenKind::*;
        assert_eq!(
            kinds("<=<>>=!=<>="),
            vec![Le, Diamond, Ge, NotEq, Diamond, Eq, Eof]
        );
    }

    #[test]
    fn a_sign_is_never_part_of_an_integer_token() {
        use TokenKind::*;
        assert_eq!(kinds("4 -1"), vec![Integer("4"), Minus, Integer("1"), Eof]);
    }

    #[test]
    fn words_mixing_digits_and_letters_are_words() {
        assert_eq!(
            kinds("2abc concat_ws"),
            vec![
                TokenKind::Word("2abc"),
                TokenKind::Word("concat_ws"),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn only_the_matching_quote_is_escaped() {
        assert_eq!(
            kinds(r#"'a"b\'c' "a'b\"c" 'ab\c'"#),
            vec![
                TokenKind::Str(r#"a"b'c"#.into()),
                TokenKind::Str(r#"a'b"c"#.into()),
                TokenKind::Str(r"ab\c".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn unterminated_strings_point_at_the_opening_quote() {
        let err = tokenize("x = 'abc").unwrap_err();
        assert_eq!(err.column(), 5);
        assert!(err.message().contains("unterminated"));
        // An escaped closing quote does not close the literal.
        assert!(tokenize(r"'abc\'").is_err());
        assert!(tokenize("'abc\\").is_err());
    }

    #[test]
    fn unicode_in_strings_is_kept_and_outside_strings_is_rejected() {
        assert_eq!(kinds("'héllo ✓'")[0], TokenKind::Str("héllo ✓".into()));
        let err = tokenize("a = é").unwrap_err();
        assert_eq!(err.column(), 5);
        assert_eq!(err.message(), "unexpected character 'é'");
    }

    #[test]
    fn a_lone_bang_is_an_error() {
        let err = tokenize("a ! b").unwrap_err();
        assert_eq!(err.to_string(), "at column 4: expected '=' after '!'");
    }
}
