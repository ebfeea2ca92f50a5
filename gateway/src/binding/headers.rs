//! Header values of the HTTP binding (spec 3.1.3.2): percent-encoding of attribute values.

use std::string::FromUtf8Error;

/// A `ce-` header value whose percent-decoded bytes are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{raw:?} does not decode to valid UTF-8")]
pub struct PercentDecodeError {
    /// The header value as received.
    pub raw: String,
    #[source]
    pub source: FromUtf8Error,
}

/// Encodes an attribute value for a `ce-` header: space, `"`, `%` and everything outside printable
/// ASCII become `%XX` of their UTF-8 bytes (upper-case hex).
pub fn percent_encode(value: &str) -> String {
    let plain = |byte: u8| (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%';
    // Most values (ids, sources, types) need no escape: one copy.
    if value.bytes().all(plain) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for byte in value.bytes() {
        if plain(byte) {
            out.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    out
}

/// Decodes a `ce-` header value: an RFC 7230 quoted string is unquoted first, then one round of
/// percent-decoding (either hex case). The result must be valid UTF-8 (which also rejects overlong
/// encodings). A `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(raw: &str) -> Result<String, PercentDecodeError> {
    let unquoted;
    let text = match raw
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                } else {
                    out.push(c);
                }
            }
            unquoted = out;
            unquoted.as_str()
        }
        None => raw,
    };
    if !text.contains('%') {
        return Ok(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                decoded.push(byte);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(decoded).map_err(|source| PercentDecodeError {
        raw: raw.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors: testdata/spec_examples/http_binding/3.1.3.2_header_percent_encoding_vectors.json
    #[test]
    fn the_spec_vectors_round_trip() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/spec_examples/http_binding/3.1.3.2_header_percent_encoding_vectors.json"
        );
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in vectors["encode"].as_array().unwrap() {
            let value = case["attribute_value"].as_str().unwrap();
            let header = case["header_value"].as_str().unwrap();
            assert_eq!(percent_encode(value), header);
            assert_eq!(percent_decode(header).unwrap(), value);
        }
        for case in vectors["decode_must_reject"].as_array().unwrap() {
            assert!(percent_decode(case["header_value"].as_str().unwrap()).is_err());
        }
    }

    #[test]
    fn quotes_percent_and_space_are_encoded() {
        assert_eq!(percent_encode("a \"b\" 100%"), "a%20%22b%22%20100%25");
        assert_eq!(
            percent_decode("a%20%22b%22%20100%25").unwrap(),
            "a \"b\" 100%"
        );
    }

    #[test]
    fn decoding_is_lenient_where_the_spec_allows() {
        assert_eq!(percent_decode("%e2%82%ac").unwrap(), "€");
        assert_eq!(percent_decode("%41").unwrap(), "A");
        assert_eq!(
            percent_decode("\"quoted \\\"value\\\"\"").unwrap(),
            "quoted \"value\""
        );
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert_eq!(percent_decode("%zz").unwrap(), "%zz");
    }
}
