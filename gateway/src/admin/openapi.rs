//! The admin API's OpenAPI document, generated from the handlers' annotations and the types they
//! answer with (utoipa): served at `GET /-/openapi.json`, committed as
//! `docs/admin-api.openapi.json`. A test fails when the committed file is not what the code
//! generates; `KNACTOR_WRITE_OPENAPI=1 cargo test -p knactor-gateway openapi` rewrites it.
//! (`/-/faults/...`, for supervision tests only, is left out.)

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{access, stats, tail, topology, Authorized, SESSION_COOKIE};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "knactor admin API",
        description = "A knactor node's admin API, under /-/ on its --listen address (or on \
            --admin-listen). With --admin-token-file every route but POST /-/login wants \
            `Authorization: Bearer <token>` or the console's session cookie (and, on changes \
            made with the cookie, its CSRF token in X-Knactor-CSRF); without a token it is open \
            on a loopback listener only."
    ),
    paths(
        access::login,
        access::logout,
        access::session,
        super::status,
        topology::node,
        topology::topology,
        stats::stats,
        super::event_trail,
        tail::tail,
        super::parked,
        super::redrive,
        serve,
    ),
    components(schemas(tail::TailSkippedDoc)),
    modifiers(&Security),
    tags(
        (name = "node", description = "What the node runs, and how it is doing"),
        (name = "events", description = "Where events went: the journal and the live tail"),
        (name = "parked", description = "Events parked after every attempt failed, and their re-drive"),
        (name = "console", description = "The web console's session"),
    )
)]
struct AdminApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The node's admin token (--admin-token-file)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The console's session, opened by POST /-/login",
            ))),
        );
    }
}

/// The document, as committed (pretty JSON, one trailing newline).
pub fn document() -> String {
    let mut text = AdminApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(
    get, path = "/-/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API", content_type = "application/json")),
    security(("bearer" = []), ("session" = []))
)]
pub async fn serve(_: Authorized) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.openapi.json");
        let generated = document();
        if std::env::var_os("KNACTOR_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is not what the code generates: run `KNACTOR_WRITE_OPENAPI=1 cargo test -p \
             knactor-gateway openapi` and commit it",
            path.display()
        );
    }

    #[test]
    fn every_console_route_is_documented() {
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        for path in [
            "/-/session",
            "/-/login",
            "/-/status",
            "/-/topology",
            "/-/stats",
            "/-/node",
            "/-/events/{id}",
            "/-/brokers/{namespace}/{broker}/tail",
            "/-/brokers/{namespace}/{broker}/parked",
            "/-/brokers/{namespace}/{broker}/parked/redrive",
        ] {
            assert!(
                document["paths"].get(path).is_some(),
                "{path} is not in the document"
            );
        }
    }
}
