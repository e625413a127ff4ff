//! Bearer-token authentication.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Compare in time that depends only on the length of the expected token,
/// so response timing does not reveal how much of a guess was right.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = (given.len() ^ expected.len()) as u8 | u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Middleware: the request must carry `Authorization: Bearer <token>`.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) { next.run(req).await } else { ApiError::Unauthorized.into_response() }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for wrong in [&b"secreT"[..], b"secre", b"secrets", b"", b"\0ecret"] {
            assert!(!constant_time_eq(wrong, b"secret"), "{wrong:?}");
        }
        assert!(!constant_time_eq(b"x", b""));
    }
}
