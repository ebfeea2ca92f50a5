//! One module per subcommand, and what several share: the output formats (`output`) and the URL
//! flags' parsers (below).
//!
//! The doc comments of the flags are their `--help` text, written for a terminal: `<namespace>`
//! there is what a user types, not an HTML tag, and a URL is an example, not a link.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

pub(crate) mod admin;
pub(crate) mod admission;
pub(crate) mod completions;
pub(crate) mod crdgen;
pub(crate) mod display;
pub(crate) mod limits;
pub(crate) mod output;
pub(crate) mod preflight;
pub(crate) mod run;
pub(crate) mod send;
pub(crate) mod telemetry;
pub(crate) mod trace;
pub(crate) mod validate;

use url::Url;

/// Threads worth using by default: the machine's, up to four.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

/// `--node`: a node's admin API, an `http://` or `https://` URL with a host.
pub(crate) fn node_url(text: &str) -> Result<Url, String> {
    http_url(text, "http://127.0.0.1:8080")
}

/// `knactor send`'s URL: where events go, an `http://` or `https://` URL with a host.
pub(crate) fn target_url(text: &str) -> Result<Url, String> {
    http_url(text, "http://127.0.0.1:8080/<namespace>/<broker>")
}

/// An absolute http(s) URL. The URL parser's own words ("relative URL without a base") say
/// nothing a user can act on: the error says what form is expected, and the URL to write when
/// only the scheme is missing (`127.0.0.1:8080`, `localhost:8080`). Clap puts the value and the
/// flag before it.
pub(crate) fn http_url(text: &str, example: &str) -> Result<Url, String> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => return Ok(url),
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            return Err(format!("no host: expected a URL such as {example}"))
        }
        Err(error) if text.starts_with("http://") || text.starts_with("https://") => {
            return Err(format!("{error}: expected a URL such as {example}"))
        }
        _ => {}
    }
    let fixed = Url::parse(&format!("http://{text}")).ok().filter(|url| {
        url.has_host() && !text.contains("://") && !text.contains(char::is_whitespace)
    });
    Err(match fixed {
        Some(url) => format!(
            "no http:// or https:// scheme: write {}",
            url.as_str().trim_end_matches('/')
        ),
        None => format!("not an http:// or https:// URL: expected a URL such as {example}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_its_scheme_is_refused_with_the_url_to_write() {
        assert_eq!(
            node_url("127.0.0.1:8080").unwrap_err(),
            "no http:// or https:// scheme: write http://127.0.0.1:8080"
        );
        assert_eq!(
            target_url("localhost:8080/default/default").unwrap_err(),
            "no http:// or https:// scheme: write http://localhost:8080/default/default"
        );
        assert_eq!(
            target_url("not a url").unwrap_err(),
            "not an http:// or https:// URL: expected a URL such as \
             http://127.0.0.1:8080/<namespace>/<broker>"
        );
        assert_eq!(
            node_url("ftp://files.example/x").unwrap_err(),
            "not an http:// or https:// URL: expected a URL such as http://127.0.0.1:8080"
        );
        assert!(node_url("http://127.0.0.1:99999")
            .unwrap_err()
            .starts_with("invalid port number: expected"));
        assert_eq!(
            node_url("https://knactor.example:9090").unwrap().as_str(),
            "https://knactor.example:9090/"
        );
    }
}
