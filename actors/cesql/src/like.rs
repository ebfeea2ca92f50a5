//! LIKE patterns (§3.4.3), compiled once at parse time.

/// A compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LikePattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Char(char),
    /// `_`: exactly one character.
    One,
    /// `%`: any run of characters, including none.
    Many,
}

impl LikePattern {
    /// Compiles a pattern. `\` escapes only `%` and `_` (the spec names no
    /// other escapes); before any other character, or at the end, it is a
    /// literal backslash, so `'ab\c' LIKE 'ab\c'` holds.
    pub(crate) fn compile(pattern: &str) -> LikePattern {
        let mut parts = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let part = match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('%' | '_')) => {
                        chars.next();
                        Part::Char(next)
                    }
                    _ => Part::Char('\\'),
                },
                '_' => Part::One,
                // Consecutive `%` match the same as one and would only
                // multiply backtracking.
                '%' if parts.last() == Some(&Part::Many) => continue,
                '%' => Part::Many,
                c => Part::Char(c),
            };
            parts.push(part);
        }
        LikePattern { parts }
    }

    /// Wildcard matching with single-point backtracking: on a mismatch,
    /// retry from the most recent `%` letting it swallow one more character.
    /// Only the latest `%` needs revisiting, so this is O(len(text) ×
    /// len(pattern)) in the worst case, with no recursion and no allocation.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let parts = &self.parts;
        let (mut p, mut t) = (0, 0);
        // (pattern index after the `%`, text offset the `%` resumes from)
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            let next_char = text[t..].chars().next();
            if let Some(part) = parts.get(p) {
                match (part, next_char) {
                    (Part::Many, _) => {
                        p += 1;
                        backtrack = Some((p, t));
                        continue;
                    }
                    (Part::One, Some(c)) => {
                        p += 1;
                        t += c.len_utf8();
                        continue;
                    }
                    (Part::Char(want), Some(c)) if *want == c => {
                        p += 1;
                        t += c.len_utf8();
                        continue;
                    }
                    _ => {}
                }
            } else if next_char.is_none() {
                return true;
            }
            match backtrack {
                Some((resume_p, resume_t)) => match text[resume_t..].chars().next() {
                    Some(c) => {
                        let resume_t = resume_t + c.len_utf8();
                        backtrack = Some((resume_p, resume_t));
                        p = resume_p;
                        t = resume_t;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(text: &str, pattern: &str) -> bool {
        LikePattern::compile(pattern).matches(text)
    }

    #[test]
    fn underscore_matches_exactly_one_character() {
        assert!(like("azbzc", "a_b_c"));
        assert!(!like("abc", "a_b_c"));
        assert!(!like("", "_"));
    }

    #[test]
    fn percent_matches_any_run_including_none() {
        assert!(like("abc", "a%b%c"));
        assert!(like("azzzbzzzc", "a%b%c"));
        assert!(like("", "%"));
        assert!(!like("ab.cde", ".%.%."));
        assert!(like(".ab.cde.", ".%.%."));
    }

    #[test]
    fn like_escapes_percent_with_backslash() {
        assert!(like("abc%", r"abc\%"));
        assert!(!like("abcd", r"abc\%"));
    }

    #[test]
    fn like_escapes_underscore_with_backslash() {
        assert!(like("a_b", r"a\_b"));
        assert!(!like("azb", r"a\_b"));
    }

    #[test]
    fn backslash_before_other_characters_is_literal() {
        assert!(like(r"ab\c", r"ab\c"));
        assert!(like(r"ab\\c", r"ab\\c"));
        assert!(like(r"trailing\", r"trailing\"));
        assert!(like(r"a\", r"a%\"));
        assert!(!like("abc", r"ab\c"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!like("aBc", "_b%"));
        assert!(like("abc", "_b%"));
    }

    #[test]
    fn wildcards_count_unicode_characters_not_bytes() {
        assert!(like("é", "_"));
        assert!(like("日本語", "日_語"));
        assert!(like("日本語", "%語"));
        assert!(!like("日本語", "__"));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "%a".repeat(200));
        assert!(!like(&text, &pattern));
    }
}
