//! The web console: one page at `/` on the admin API's listener, and its scripts and style, every
//! file embedded in the binary (no CDN, no font, no build step: plain JavaScript modules in
//! `gateway/console/`). It reads nothing but the admin API, with the same access: with an admin
//! token, `/` answers 401 (the page then shows its login form) until the browser has a session;
//! without one, it is open on a loopback listener and off elsewhere.
//!
//! The assets are public (code, no data), under single-segment paths (`/console.*`), which no
//! broker path (`/<namespace>/<name>`) can be.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use url::Url;

use crate::admin::access::access_of;
use crate::admin::{AdminAccess, AdminError};

/// What the console needs to know of its node.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// `--jaeger-ui-url`: where a trace id links to (`<url>/trace/<id>`).
    pub jaeger_ui_url: Option<Url>,
    /// The node's name (`--node-id`, else its host name).
    pub node: String,
    pub started_at: SystemTime,
    /// The node's broker ingress as others reach it (to tell which sinks are its brokers).
    pub ingress: Option<Url>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            jaeger_ui_url: None,
            node: "knactor".into(),
            started_at: SystemTime::now(),
            ingress: None,
        }
    }
}

impl ConsoleSettings {
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

const INDEX: &str = include_str!("../console/index.html");

/// Path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
    (
        "/console.app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.app.js"),
    ),
    (
        "/console.api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.api.js"),
    ),
    (
        "/console.dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.dom.js"),
    ),
    (
        "/console.topology.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.topology.js"),
    ),
    (
        "/console.numbers.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.numbers.js"),
    ),
    (
        "/console.tail.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.tail.js"),
    ),
    (
        "/console.event.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.event.js"),
    ),
    (
        "/console.parked.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.parked.js"),
    ),
    (
        "/console.nodes.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.nodes.js"),
    ),
];

/// Only this origin's scripts, styles and requests; no frames, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/", web::get().to(index));
    for (path, _, _) in ASSETS {
        config.route(path, web::get().to(asset));
    }
}

/// The page: 200 to whoever may use the admin API, 401 (the page shows its login form) to a
/// browser without a session, 404 where the admin API is off.
async fn index(request: HttpRequest) -> HttpResponse {
    let access = access_of(&request);
    let status = match access.identify(&request) {
        Ok(_) => StatusCode::OK,
        Err(AdminError::Off) => {
            return HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body(format!("{}\n", AdminError::Off));
        }
        Err(refused @ AdminError::Forbidden(_)) => {
            return HttpResponse::Forbidden()
                .content_type("text/plain; charset=utf-8")
                .body(format!("{refused}\n"));
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    };
    let mut response = HttpResponse::build(status);
    secure(&mut response);
    if matches!(access, AdminAccess::Token { .. }) {
        // Behind a login: never from a cache.
        response.insert_header((header::CACHE_CONTROL, "no-store"));
    }
    response
        .content_type("text/html; charset=utf-8")
        .body(INDEX)
}

async fn asset(request: HttpRequest) -> HttpResponse {
    match ASSETS.iter().find(|(path, _, _)| *path == request.path()) {
        Some((_, content_type, body)) => {
            let mut response = HttpResponse::Ok();
            secure(&mut response);
            response
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .content_type(*content_type)
                .body(*body)
        }
        None => HttpResponse::NotFound().finish(),
    }
}

fn secure(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header(("content-security-policy", CONTENT_SECURITY_POLICY))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("x-frame-options", "DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_scripts_import_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(path, _, _)| *path).collect();
        for (path, _, body) in ASSETS {
            for line in body.lines().filter(|line| line.starts_with("import ")) {
                let module = line
                    .rsplit_once("from '.")
                    .map(|(_, rest)| rest.trim_end_matches("';"))
                    .unwrap_or_default();
                assert!(
                    served.contains(&module),
                    "{path} imports {module:?}, which is not served"
                );
            }
        }
        for line in INDEX.lines() {
            for (prefix, end) in [("src=\"", '"'), ("href=\"", '"')] {
                if let Some((_, rest)) = line.split_once(prefix) {
                    let target = rest.split(end).next().unwrap_or_default();
                    // Fragments are the page's own views.
                    if !target.starts_with('#') {
                        assert!(served.contains(&target), "index.html loads {target:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn no_asset_loads_anything_from_elsewhere() {
        for (path, _, body) in ASSETS.iter().chain([&("/", "", INDEX)]) {
            // The SVG namespace is a name, never fetched.
            let body = body.replace("'http://www.w3.org/2000/svg'", "");
            for needle in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
                assert!(!body.contains(needle), "{path} names {needle}");
            }
        }
    }
}
