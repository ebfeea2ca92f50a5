//! Small HTTP helpers for tests.

use std::time::Duration;

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends one binary-mode event; returns the status.
pub fn send(url: &str, id: &str, ty: &str) -> u16 {
    send_with(url, id, ty, &[]).status().as_u16()
}

pub fn send_with(
    url: &str,
    id: &str,
    ty: &str,
    headers: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut request = http()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/e2e")
        .header("ce-type", ty);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().unwrap()
}
