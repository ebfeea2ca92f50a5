//! Who may use the admin API and the console on one listener ([`AdminAccess`]), and how a caller
//! proves it ([`Authorized`]).
//!
//! ```text
//!  token set (--admin-token-file)      Authorization: Bearer <token>    scripts, the CLI
//!                                      or the console's session cookie  a browser, after POST /-/login
//!  no token, loopback listener         anyone on this machine
//!  no token, reachable listener        nobody (404 saying why)
//! ```
//!
//! A browser never holds the token: `POST /-/login` checks it once and answers with a session
//! cookie (`HttpOnly`: no script reads it; `SameSite=Strict`: no other site's page sends it) and
//! a CSRF token the console keeps in memory. Every mutation made with the cookie must carry that
//! CSRF token in `X-Knactor-CSRF`; a bearer token needs none (a browser never attaches one on its
//! own). Without a token (loopback), a mutation from a page of another origin is refused, and so
//! is any request whose `Host` is a name other than `localhost` (a DNS-rebinding page's).

use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::AdminError;
use crate::ingress::GatewayState;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "knactor_session";
/// The header that carries the session's CSRF token on mutations.
pub const CSRF_HEADER: &str = "x-knactor-csrf";
/// Sessions a listener keeps at once; a new one beyond pushes out the least recently used.
const MAX_SESSIONS: usize = 64;
/// A session unused this long is over (the cookie's Max-Age says the same to the browser).
const SESSION_IDLE: Duration = Duration::from_secs(8 * 60 * 60);

/// Who may use the admin API on one listener.
#[derive(Clone)]
pub enum AdminAccess {
    /// Callers that present this bearer token, or a session opened with it.
    Token {
        token: Arc<str>,
        sessions: Arc<Sessions>,
    },
    /// Anyone who reaches the listener: a loopback listener without a token (this machine only).
    Local,
    /// Nobody: a listener other machines reach, and no token set.
    Off,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(match self {
            AdminAccess::Token { .. } => "Token(..)",
            AdminAccess::Local => "Local",
            AdminAccess::Off => "Off",
        })
    }
}

/// How a request proved who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Via {
    Bearer,
    /// The console's cookie; the session's CSRF token.
    Session {
        id: String,
        csrf: Arc<str>,
    },
    /// No token on a loopback listener.
    Local,
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the session's id (the cookie) or its CSRF token.
        match self {
            Via::Bearer => f.write_str("Bearer"),
            Via::Session { .. } => f.debug_struct("Session").finish_non_exhaustive(),
            Via::Local => f.write_str("Local"),
        }
    }
}

impl AdminAccess {
    /// The access of a listener bound to `address`, given the token (if any).
    pub fn for_listener(token: Option<&Arc<str>>, address: SocketAddr) -> Self {
        match token {
            Some(token) => AdminAccess::Token {
                token: token.clone(),
                sessions: Arc::default(),
            },
            None if address.ip().is_loopback() => AdminAccess::Local,
            None => AdminAccess::Off,
        }
    }

    /// Whether and how `request` may use the admin API; mutations are checked for CSRF.
    pub fn check(&self, request: &HttpRequest) -> Result<Via, AdminError> {
        let via = self.identify(request)?;
        if !is_safe(request.method()) {
            match &via {
                Via::Bearer => {}
                Via::Session { csrf, .. } => {
                    let presented = request
                        .headers()
                        .get(CSRF_HEADER)
                        .and_then(|value| value.to_str().ok());
                    match presented {
                        Some(presented) if same(presented.as_bytes(), csrf.as_bytes()) => {}
                        _ => {
                            return Err(AdminError::Forbidden(format!(
                                "a change made with the console's session must carry its CSRF \
                                 token in {CSRF_HEADER} (GET /-/session gives it)"
                            )))
                        }
                    }
                }
                Via::Local => check_same_origin(request)?,
            }
        }
        Ok(via)
    }

    /// Who the request is, mutations aside.
    pub fn identify(&self, request: &HttpRequest) -> Result<Via, AdminError> {
        match self {
            AdminAccess::Off => Err(AdminError::Off),
            AdminAccess::Local => {
                check_local_host(request)?;
                Ok(Via::Local)
            }
            AdminAccess::Token { token, sessions } => {
                let bearer = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .map(str::trim);
                if let Some(presented) = bearer {
                    return if same(presented.as_bytes(), token.as_bytes()) {
                        Ok(Via::Bearer)
                    } else {
                        Err(AdminError::Unauthorized("the token is not the node's"))
                    };
                }
                match cookie(request, SESSION_COOKIE) {
                    Some(id) => match sessions.check(&id) {
                        Some(csrf) => Ok(Via::Session { id, csrf }),
                        None => Err(AdminError::Unauthorized(
                            "the console's session is over: log in again with the admin token",
                        )),
                    },
                    None => Err(AdminError::Unauthorized(
                        "send the node's admin token as Authorization: Bearer <token>, or log in \
                         to the console with it",
                    )),
                }
            }
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Without a token, only this machine's pages may change anything: a page of another origin
/// (which a browser says in `Origin` and `Sec-Fetch-Site`) is refused.
fn check_same_origin(request: &HttpRequest) -> Result<(), AdminError> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if text("sec-fetch-site") == Some("cross-site") {
        return Err(AdminError::Forbidden(
            "a page of another site may not change anything here".into(),
        ));
    }
    if let (Some(origin), Some(host)) = (text("origin"), text("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(AdminError::Forbidden(format!(
                "a page of {origin} may not change anything here"
            )));
        }
    }
    Ok(())
}

/// Without a token, a request must name the listener by address or as `localhost`: a page whose
/// own name resolves to 127.0.0.1 (DNS rebinding) would otherwise read the admin API as its own.
fn check_local_host(request: &HttpRequest) -> Result<(), AdminError> {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(());
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(AdminError::Forbidden(format!(
            "without an admin token this node answers only to an address or localhost, not to \
             {name:?} (start it with --admin-token-file to use a name)"
        )))
    }
}

/// Compares without stopping at the first difference, so that timing tells nothing of the token.
fn same(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The value of the cookie `name`, if the request carries it.
fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// 32 random bytes, in hex.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The console sessions of one listener.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // How many, never their ids (the cookies) or CSRF tokens.
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("Sessions")
            .field("open", &open)
            .finish_non_exhaustive()
    }
}

struct Session {
    csrf: Arc<str>,
    last_used: Instant,
}

impl Sessions {
    /// Opens a session: its id (the cookie) and its CSRF token.
    fn open(&self) -> (String, Arc<str>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, session| now.duration_since(session.last_used) < SESSION_IDLE);
        if open.len() >= MAX_SESSIONS {
            let oldest = open
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                open.remove(&oldest);
            }
        }
        let (id, csrf) = (random_token(), Arc::<str>::from(random_token()));
        open.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session, which this use keeps alive.
    fn check(&self, id: &str) -> Option<Arc<str>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let session = open.get_mut(id)?;
        if now.duration_since(session.last_used) >= SESSION_IDLE {
            open.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.csrf.clone())
    }

    fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// A request the listener's [`AdminAccess`] lets in: every handler of the admin API takes one.
#[derive(Debug)]
pub struct Authorized {
    pub via: Via,
}

impl FromRequest for Authorized {
    type Error = AdminError;
    type Future = Ready<Result<Self, AdminError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            access_of(request)
                .check(request)
                .map(|via| Authorized { via }),
        )
    }
}

pub(crate) fn access_of(request: &HttpRequest) -> AdminAccess {
    request
        .app_data::<web::Data<GatewayState>>()
        .map_or(AdminAccess::Off, |state| state.admin_access.clone())
}

/// `POST /-/login`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    /// The node's admin token (the first line of `--admin-token-file`).
    token: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("Login").finish_non_exhaustive()
    }
}

/// Who the caller is to the admin API, and what the console needs to know.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// `token` (the node wants its admin token) or `local` (no token: loopback only).
    access: &'static str,
    /// `bearer`, `session` (the console's cookie) or `local`.
    via: &'static str,
    /// What mutations made with the session's cookie carry in `X-Knactor-CSRF` (null: none needed).
    csrf: Option<String>,
    /// `--jaeger-ui-url`: where the console links a trace.
    jaeger_ui_url: Option<String>,
    /// This node's name (`--node-id`, else its host name).
    node: String,
    /// The knactor version of this node.
    version: &'static str,
}

impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the CSRF token.
        f.debug_struct("SessionInfo")
            .field("access", &self.access)
            .field("via", &self.via)
            .field("jaeger_ui_url", &self.jaeger_ui_url)
            .field("node", &self.node)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Opens a console session with the admin token: a `SameSite=Strict`, `HttpOnly` cookie, and the
/// CSRF token mutations made with it must carry.
#[utoipa::path(
    post, path = "/-/login", tag = "console",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = SessionInfo),
        (status = 400, description = "The body is not {\"token\": \"...\"}", body = super::ErrorBody),
        (status = 401, description = "Not the node's token", body = super::ErrorBody),
        (status = 404, description = "The admin API is off on this listener", body = super::ErrorBody),
    )
)]
pub async fn login(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, AdminError> {
    let access = access_of(&request);
    let login: Login = serde_json::from_slice(&body).map_err(|error| {
        AdminError::BadRequest(format!(
            "the body must be {{\"token\": \"<the node's admin token>\"}}: {error}"
        ))
    })?;
    match &access {
        AdminAccess::Off => Err(AdminError::Off),
        AdminAccess::Local => {
            check_local_host(&request)?;
            Ok(HttpResponse::Ok().json(session_info(&access, &Via::Local, &state)))
        }
        AdminAccess::Token { token, sessions } => {
            if !same(login.token.trim().as_bytes(), token.as_bytes()) {
                return Err(AdminError::Unauthorized("the token is not the node's"));
            }
            let (id, csrf) = sessions.open();
            let via = Via::Session {
                id: id.clone(),
                csrf,
            };
            Ok(HttpResponse::Ok()
                .insert_header((
                    header::SET_COOKIE,
                    format!(
                        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                        SESSION_IDLE.as_secs()
                    ),
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(session_info(&access, &via, &state)))
        }
    }
}

/// Ends the console's session (its cookie is cleared).
#[utoipa::path(
    post, path = "/-/logout", tag = "console",
    responses((status = 204, description = "Logged out"), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn logout(
    authorized: Authorized,
    request: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    if let (Via::Session { id, .. }, AdminAccess::Token { sessions, .. }) =
        (&authorized.via, access_of(&request))
    {
        sessions.close(id);
    }
    Ok(HttpResponse::NoContent()
        .insert_header((
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish())
}

/// Who the caller is, the CSRF token of its session, and the console's settings.
#[utoipa::path(
    get, path = "/-/session", tag = "console",
    responses((status = 200, body = SessionInfo), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn session(
    authorized: Authorized,
    request: HttpRequest,
    state: web::Data<GatewayState>,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(session_info(&access_of(&request), &authorized.via, &state))
}

fn session_info(access: &AdminAccess, via: &Via, state: &GatewayState) -> SessionInfo {
    SessionInfo {
        access: match access {
            AdminAccess::Token { .. } => "token",
            _ => "local",
        },
        via: match via {
            Via::Bearer => "bearer",
            Via::Session { .. } => "session",
            Via::Local => "local",
        },
        csrf: match via {
            Via::Session { csrf, .. } => Some(csrf.to_string()),
            _ => None,
        },
        jaeger_ui_url: state
            .console
            .jaeger_ui_url
            .as_ref()
            .map(|url| url.as_str().trim_end_matches('/').to_string()),
        node: state.console.node.clone(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_session_keeps_its_csrf_token_until_closed() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.check(&id), Some(csrf));
        sessions.close(&id);
        assert_eq!(sessions.check(&id), None);
        assert_eq!(sessions.check("made-up"), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open().0;
        for _ in 0..MAX_SESSIONS {
            sessions.open();
        }
        assert_eq!(sessions.check(&first), None, "the oldest went");
        assert!(sessions.open.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn a_local_listener_answers_only_to_addresses_and_localhost() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "localhost",
        ] {
            let request = TestRequest::get()
                .insert_header(("host", host))
                .to_http_request();
            assert!(check_local_host(&request).is_ok(), "{host}");
        }
        let request = TestRequest::get()
            .insert_header(("host", "evil.example:8080"))
            .to_http_request();
        assert!(check_local_host(&request).is_err());
    }

    #[test]
    fn a_local_mutation_from_another_origin_is_refused() {
        let from = |origin: &str| {
            TestRequest::post()
                .insert_header(("host", "127.0.0.1:8080"))
                .insert_header(("origin", origin))
                .to_http_request()
        };
        assert!(check_same_origin(&from("http://127.0.0.1:8080")).is_ok());
        assert!(check_same_origin(&from("https://evil.example")).is_err());
        let cross = TestRequest::post()
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(check_same_origin(&cross).is_err());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let request = TestRequest::get()
            .insert_header(("cookie", "a=1; knactor_session=abc; b=2"))
            .to_http_request();
        assert_eq!(cookie(&request, SESSION_COOKIE).as_deref(), Some("abc"));
    }
}
