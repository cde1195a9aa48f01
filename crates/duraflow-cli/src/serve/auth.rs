//! Bearer-token authentication: the token the server was given, whether it must have one
//! for the address it binds, and the check of every API request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The token API requests must present, if the server has one.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    token: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Auth {
    /// Requests must present `token` (`None`: requests need none).
    pub(crate) fn new(token: Option<String>) -> Auth {
        Auth {
            token: token.map(|t| Arc::from(t.into_bytes())),
        }
    }

    /// Whether requests need a token.
    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks an `Authorization` header value against the token.
    fn check(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized(
                "this server requires a bearer token: send the header Authorization: Bearer \
                 <token>, with the token given to duraflow serve (--token or DURAFLOW_TOKEN)",
            ));
        };
        let given = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .unwrap_or(b"");
        if tokens_match(given, expected) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "the bearer token is wrong: send Authorization: Bearer <token> with the token \
                 given to duraflow serve (--token or DURAFLOW_TOKEN)",
            ))
        }
    }
}

/// Whether `given` equals `expected`, in a time that depends only on `expected`'s length:
/// every byte of `expected` is compared, whatever `given` holds.
pub(crate) fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let same_length = (given.len() as u64).ct_eq(&(expected.len() as u64));
    let mut same_bytes = subtle::Choice::from(1);
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        same_bytes &= g.ct_eq(e);
    }
    (same_length & same_bytes).into()
}

/// The middleware in front of the API routes: a request without the token gets 401.
pub(crate) async fn require_token(
    State(auth): State<Auth>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match auth.check(header) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Refuses to serve every address but loopback without a token.
pub(crate) fn check_exposure(addrs: &[SocketAddr], auth: &Auth) -> Result<(), String> {
    if auth.required() {
        return Ok(());
    }
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(open) => Err(format!(
            "refusing to listen on {open}, which is not a loopback address, without a token: \
             anyone who reaches it could start, cancel and purge instances; pass --token TOKEN \
             or set DURAFLOW_TOKEN (clients then send Authorization: Bearer TOKEN), or listen \
             on 127.0.0.1"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cretx", b"s3cret"));
        assert!(!tokens_match(b"s3creT", b"s3cret"));
        assert!(!tokens_match(b"", b"s3cret"));
    }

    #[test]
    fn the_header_must_carry_the_token() {
        let auth = Auth::new(Some("t0k".into()));
        assert!(auth.check(Some(b"Bearer t0k")).is_ok());
        assert!(auth.check(Some(b"Bearer t0x")).is_err());
        assert!(auth.check(Some(b"t0k")).is_err());
        assert!(auth.check(None).is_err());
        assert!(Auth::new(None).check(None).is_ok());
    }

    #[test]
    fn only_loopback_goes_without_a_token() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_exposure(&[loopback], &Auth::new(None)).is_ok());
        assert!(check_exposure(&[any], &Auth::new(None)).is_err());
        assert!(check_exposure(&[any], &Auth::new(Some("t".into()))).is_ok());
    }
}
