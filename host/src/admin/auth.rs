//! Bearer-token authentication.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The token a request carries in `Authorization: Bearer <token>`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether `given` is the expected token. A missing or empty token is never a
/// match, whatever the expected one is (the start refuses empty tokens; this
/// does not rely on it). The comparison takes the same time wherever a wrong
/// token differs, so timing does not reveal how much of a guess was right.
pub fn token_matches(given: Option<&str>, expected: &str) -> bool {
    match given {
        Some(given) if !given.is_empty() && !expected.is_empty() => bool::from(given.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// Middleware: the request must carry `Authorization: Bearer <token>`.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if token_matches(bearer(req.headers()), &token) { next.run(req).await } else { ApiError::Unauthorized.into_response() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_exact_token_matches() {
        let expected = "secret-token-0123456789";
        assert!(token_matches(Some(expected), expected));
        for wrong in ["secret-token-012345678", "secret-token-01234567890", "Secret-token-0123456789", "", "\0ecret-token-0123456789"] {
            assert!(!token_matches(Some(wrong), expected), "{wrong:?}");
        }
        assert!(!token_matches(None, expected), "no header is no match");
        assert!(!token_matches(None, ""), "no header never matches an empty token");
        assert!(!token_matches(Some(""), ""), "an empty header never matches an empty token");
    }

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("BEARER abc")), Some("abc"));
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&with("Bearer")), None);
        assert_eq!(bearer(&with("Basic abc")), None);
    }
}
