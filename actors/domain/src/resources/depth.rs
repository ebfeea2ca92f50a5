//! How deeply a YAML text nests, found in one linear pass before the YAML parser sees it.
//!
//! The parser's bookkeeping for flow collections is quadratic in their depth: a file of 100,000
//! nested `[` took 23.6 s to refuse, on the thread that loads the configuration. This scan refuses
//! it in about a millisecond, naming the line and column where it got too deep.
//!
//! It counts what can nest: block indentation levels, compact `- ` and `? ` entries on one line,
//! and the brackets of flow collections (`[`, `{`). It skips what cannot: quoted scalars (also
//! across lines), block scalars (`|`, `>`), comments, and brackets inside plain scalars of block
//! context (`pattern: ^[a-z]`). The count is close to the depth of the tree the parser would build
//! (a level more or less per block sequence), which is all a limit of [`MAX_DEPTH`] needs: real
//! resources nest about ten levels deep.

use std::fmt;

/// How deep a YAML document may nest. Knative's deepest resources (nested `all`/`any`/`not`
/// filters) use about ten levels; the YAML parser itself gives up at 128.
pub const MAX_DEPTH: usize = 64;

/// Where a text nests deeper than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub limit: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nested more than {} levels deep at line {} column {}",
            self.limit, self.line, self.column
        )
    }
}

/// Refuses a text whose documents nest more than `limit` levels deep.
pub fn check_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        indents: Vec::new(),
        flow: 0,
        flow_base: 0,
        quote: None,
        block_scalar: None,
    };
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if index == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        scan.line(line.as_bytes()).map_err(|column| TooDeep {
            line: index + 1,
            column: line
                .get(..column)
                .map_or(column, |before| before.chars().count())
                + 1,
            limit,
        })?;
    }
    Ok(())
}

struct Scan {
    limit: usize,
    /// Indentation of the enclosing block nodes, strictly increasing.
    indents: Vec<usize>,
    /// Open flow collections, and the block depth they opened at.
    flow: usize,
    flow_base: usize,
    /// Inside a quoted scalar that goes on past its line: its quote character.
    quote: Option<u8>,
    /// Inside a block scalar: the indentation of the line that opened it.
    block_scalar: Option<usize>,
}

/// What a line scan stopped at. `Err` carries the byte column that got too deep.
type Step = Result<(), usize>;

impl Scan {
    fn line(&mut self, line: &[u8]) -> Step {
        if let Some(quote) = self.quote {
            let Some(end) = end_of_quote(line, 0, quote) else {
                return Ok(());
            };
            self.quote = None;
            if self.flow > 0 {
                return self.flow_part(line, end);
            }
            return self.plain(line, end, self.indents.len());
        }
        if self.flow > 0 {
            return self.flow_part(line, 0);
        }
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        if rest.is_empty() || rest[0] == b'#' {
            return Ok(());
        }
        if let Some(parent) = self.block_scalar {
            if indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let at = if indent == 0 && (starts_marker(rest, b"---") || starts_marker(rest, b"...")) {
            // A new document: nothing encloses what follows.
            self.indents.clear();
            3
        } else {
            while self.indents.last().is_some_and(|&top| top > indent) {
                self.indents.pop();
            }
            if self.indents.last() != Some(&indent) {
                self.indents.push(indent);
            }
            indent
        };
        let depth = self.indents.len();
        if depth > self.limit {
            return Err(indent);
        }
        self.node(line, at, depth, indent)
    }

    /// Where a block node may start: after indentation, `- `, `? `, `: ` or a document marker.
    fn node(&mut self, line: &[u8], mut at: usize, mut depth: usize, indent: usize) -> Step {
        loop {
            at = skip_spaces(line, at);
            let Some(&byte) = line.get(at) else {
                return Ok(());
            };
            let indicator = matches!(byte, b'-' | b'?' | b':')
                && line
                    .get(at + 1)
                    .is_none_or(|&next| next == b' ' || next == b'\t');
            if indicator {
                depth += 1;
                if depth > self.limit {
                    return Err(at);
                }
                at += 1;
                continue;
            }
            // Node properties before the content: a tag or an anchor.
            if matches!(byte, b'!' | b'&') {
                while line.get(at).is_some_and(|&b| b != b' ' && b != b'\t') {
                    at += 1;
                }
                continue;
            }
            return match byte {
                b'[' | b'{' => {
                    self.flow_base = depth;
                    self.flow_part(line, at)
                }
                b'\'' | b'"' => match end_of_quote(line, at + 1, byte) {
                    Some(end) => self.plain(line, end, depth),
                    None => {
                        self.quote = Some(byte);
                        Ok(())
                    }
                },
                b'|' | b'>' => {
                    self.block_scalar = Some(indent);
                    Ok(())
                }
                b'#' => Ok(()),
                _ => self.plain(line, at, depth),
            };
        }
    }

    /// A plain scalar (or what follows a quoted one): a key whose value starts after `: `, or
    /// text to the end of the line (brackets in it are characters, not collections).
    fn plain(&mut self, line: &[u8], mut at: usize, depth: usize) -> Step {
        while at < line.len() {
            match line[at] {
                b':' if line
                    .get(at + 1)
                    .is_none_or(|&next| next == b' ' || next == b'\t') =>
                {
                    let indent = line.iter().take_while(|&&b| b == b' ').count();
                    return self.node(line, at + 1, depth, indent);
                }
                b'#' if at > 0 && matches!(line[at - 1], b' ' | b'\t') => return Ok(()),
                _ => at += 1,
            }
        }
        Ok(())
    }

    /// Inside flow collections: every bracket counts, quotes and comments excepted.
    fn flow_part(&mut self, line: &[u8], mut at: usize) -> Step {
        while at < line.len() {
            match line[at] {
                b'[' | b'{' => {
                    self.flow += 1;
                    if self.flow_base + self.flow > self.limit {
                        return Err(at);
                    }
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    if self.flow == 0 {
                        // Back in block context: what may follow is a comment.
                        return Ok(());
                    }
                }
                quote @ (b'\'' | b'"') => match end_of_quote(line, at + 1, quote) {
                    Some(end) => {
                        at = end;
                        continue;
                    }
                    None => {
                        self.quote = Some(quote);
                        return Ok(());
                    }
                },
                b'#' if at == 0 || matches!(line[at - 1], b' ' | b'\t') => return Ok(()),
                _ => {}
            }
            at += 1;
        }
        Ok(())
    }
}

/// The position after the closing quote, if it is on this line. In single quotes `''` is a
/// quote; in double quotes a backslash escapes the next character.
fn end_of_quote(line: &[u8], mut at: usize, quote: u8) -> Option<usize> {
    while at < line.len() {
        match line[at] {
            b'\\' if quote == b'"' => at += 2,
            b'\'' if quote == b'\'' && line.get(at + 1) == Some(&b'\'') => at += 2,
            byte if byte == quote => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

fn skip_spaces(line: &[u8], mut at: usize) -> usize {
    while line.get(at).is_some_and(|&b| b == b' ' || b == b'\t') {
        at += 1;
    }
    at
}

fn starts_marker(rest: &[u8], marker: &[u8]) -> bool {
    rest.starts_with(marker) && rest.get(3).is_none_or(|&b| b == b' ' || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn depth_ok(text: &str, limit: usize) -> bool {
        check_depth(text, limit).is_ok()
    }

    #[test]
    fn deep_flow_collections_are_refused_at_the_bracket_that_crosses_the_limit() {
        let text = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        let refused = check_depth(&text, 64).unwrap_err();
        assert_eq!((refused.line, refused.column), (1, 4 + 63));
        assert_eq!(
            refused.to_string(),
            "nested more than 64 levels deep at line 1 column 67"
        );
        let shallow = format!("a: {}{}\n", "{b: ".repeat(10), "}".repeat(10));
        assert!(depth_ok(&shallow, 64));
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_in_linear_time() {
        let n = 100_000;
        let text = format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        let started = Instant::now();
        assert!(check_depth(&text, MAX_DEPTH).is_err());
        let flow_lines = format!("a:\n{}", "  [\n".repeat(n));
        assert!(check_depth(&flow_lines, MAX_DEPTH).is_err());
        let compact = format!("{}x\n", "- ".repeat(n));
        assert!(check_depth(&compact, MAX_DEPTH).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn block_indentation_and_compact_entries_count() {
        let mut text = String::new();
        for level in 0..70 {
            text.push_str(&" ".repeat(level));
            text.push_str("k:\n");
        }
        assert_eq!(check_depth(&text, 64).unwrap_err().line, 65);
        assert!(depth_ok(&text, 70));
        assert!(!depth_ok(&format!("{}x\n", "- ".repeat(65)), 64));
        assert!(!depth_ok(&format!("{}x\n", "? ".repeat(65)), 64));
        assert!(depth_ok(&format!("{}x\n", "- ".repeat(60)), 64));
    }

    #[test]
    fn brackets_that_are_text_do_not_count() {
        let text = "\
pattern: ^[a-z[[[[[[[[[[[[
quoted: '[[[[[[[[[[[[[[['
double: \"[[[[[[[[ \\\" [[[[[[[\"
spanning: \"[[[[[[[
  [[[[[[[[[[[[[[[[[[[\"
script: |
  [[[[[[[[[[[[[[[[[[[[[[[[[
  {{{{{{{{{{{{{{{{{{{{{{{{{
folded: >-
  [[[[[[[[[[[[[[[[[[[[[[[[[
comment: x # [[[[[[[[[[[[[[[[[[[[[[
# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
flow: [a, 'b]]]]', \"c[[[[\", {d: e}] # [[[[[[[[[[[
";
        assert!(check_depth(text, 3).is_ok(), "{:?}", check_depth(text, 3));
    }

    #[test]
    fn anchors_tags_and_documents_are_understood() {
        assert!(!depth_ok(&format!("a: &x !!seq {}\n", "[".repeat(10)), 5));
        assert!(!depth_ok(&format!("--- {}\n", "[".repeat(10)), 5));
        let documents = format!("{0}---\n{0}", "a:\n  b:\n    c: 1\n");
        assert!(depth_ok(&documents, 3));
    }

    #[test]
    fn every_knative_sample_is_well_within_the_limit() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/knative_samples");
        let mut checked = 0;
        for folder in ["concrete", "rekt_rendered", "flawed"] {
            for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                assert!(depth_ok(&text, 16), "{text}");
                checked += 1;
            }
        }
        assert!(checked > 10);
    }
}
