//! Who may talk to the server. A page on any web site can make the user's browser send requests
//! to loopback: it cannot name this server in `Host` unless it controls DNS for a name it resolves
//! to 127.0.0.1 (DNS rebinding), and it cannot hide its own `Origin`. So a request must name an
//! allowed host, and a browser request must come from the server's own origin (the embedded UI).
use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The `Host` names a request may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any name: a server bound to a network address is reached by whatever name the network uses.
    Any,
    /// `localhost`, `127.0.0.1`, `[::1]` and these extra names (any port).
    Loopback(Vec<String>),
}

impl Default for AllowedHosts {
    fn default() -> Self {
        AllowedHosts::Loopback(Vec::new())
    }
}

impl AllowedHosts {
    /// Loopback names plus `extra` (host names or IP literals, IPv6 in brackets, no port);
    /// `*` among them allows any name.
    pub fn loopback_and(extra: &[String]) -> Self {
        if extra.iter().any(|e| e.trim() == "*") {
            return AllowedHosts::Any;
        }
        AllowedHosts::Loopback(
            extra
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// Whether `authority` (a `Host` header value: name and optional port) is allowed.
    pub fn allows(&self, authority: &str) -> bool {
        match self {
            AllowedHosts::Any => true,
            AllowedHosts::Loopback(extra) => {
                let Some(name) = host_name(authority) else {
                    return false;
                };
                let name = name.to_ascii_lowercase();
                matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
                    || extra.contains(&name)
            }
        }
    }
}

/// The name part of `name[:port]` or `[v6][:port]`; `None` when the port is not a number.
fn host_name(authority: &str) -> Option<&str> {
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (n, rest) = authority.split_at(end + 1);
        (n, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) || name.is_empty() {
        return None;
    }
    Some(name)
}

/// `authority` without the scheme's default port, lower-cased, for comparing origins.
fn normalized(authority: &str, scheme: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    a.strip_suffix(default).map(str::to_string).unwrap_or(a)
}

/// Whether the `Origin` header names the origin of the page this server itself serves at `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || authority.contains('/') {
        return false;
    }
    normalized(authority, &scheme) == normalized(host, &scheme)
}

/// Refuses requests that name a foreign host (403 `host_not_allowed`) or come from a page of
/// another origin (403 `origin_not_allowed`). Requests without `Host` (HTTP/1.0 tools) pass the
/// host check: browsers always send it.
pub async fn check_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = match headers.get(header::HOST) {
        Some(h) => match h.to_str() {
            Ok(h) => Some(h.to_string()),
            Err(_) => return host_refused("(not text)").into_response(),
        },
        None => req.uri().authority().map(|a| a.as_str().to_string()),
    };
    if let Some(h) = &host {
        if !state.allowed_hosts.allows(h) {
            return host_refused(h).into_response();
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !host.as_deref().is_some_and(|h| same_origin(origin, h)) {
            log::warn!("refused a request from origin {origin:?}");
            return ApiError::forbidden(
                format!(
                    "requests from web pages of other origins are refused (Origin `{origin}`); \
                     call the API from a program, or use the page this server serves at /"
                ),
                "origin_not_allowed",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn host_refused(host: &str) -> ApiError {
    log::warn!("refused a request for host {host:?}");
    ApiError::forbidden(
        format!(
            "`Host: {host}` is not a name this server answers to; reach it as localhost, \
             127.0.0.1 or [::1] unless its operator allows other names"
        ),
        "host_not_allowed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_any_port_pass_and_others_do_not() {
        let a = AllowedHosts::default();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.attacker.test:8080",
            "localhost.attacker.test",
            "127.0.0.1.nip.io",
            "localhost:80x",
            "[::1",
            "",
            ":8080",
            "[::2]:8080",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        let b = AllowedHosts::loopback_and(&["MyBox.lan".into()]);
        assert!(b.allows("mybox.lan:8080") && b.allows("localhost"));
        assert!(!b.allows("other.lan"));
        assert_eq!(AllowedHosts::loopback_and(&["*".into()]), AllowedHosts::Any);
    }

    #[test]
    fn same_origin_compares_scheme_default_ports_and_case() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://LocalHost", "localhost:80"));
        assert!(same_origin("https://box.lan", "box.lan:443"));
        assert!(!same_origin("http://127.0.0.1:9999", "127.0.0.1:8080"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
        assert!(!same_origin("file://", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8080/x", "127.0.0.1:8080"));
    }
}
