//! Who a request comes from: bearer tokens with names and roles, checked before the
//! request's body is read, and the roles each route needs.

use axum::extract::{FromRequestParts, Request, State as Extract};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};

/// What a token may do, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Day-to-day changes: devices, assignments, personality, versions, resets.
    Operator,
    /// Everything: removals, merges, imports, secrets, store maintenance.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("no role {other:?} (viewer, operator or admin)")),
        }
    }
}

/// A bearer token the API accepts.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Who holds it.
    pub name: String,
    /// The secret.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

/// The tokens `config` names: `token` as `admin`, and `tokens` with their roles.
pub fn credentials(config: &crate::config::Api) -> Result<Vec<Credential>, String> {
    let mut all = Vec::new();
    if !config.token.is_empty() {
        all.push(Credential {
            name: "admin".to_owned(),
            token: config.token.clone(),
            role: Role::Admin,
        });
    }
    for t in &config.tokens {
        all.push(Credential {
            name: t.name.clone(),
            token: t.token.clone(),
            role: t
                .role
                .parse()
                .map_err(|e| format!("api.tokens `{}`: {e}", t.name))?,
        });
    }
    Ok(all)
}

/// Who a request comes from: the name and role of its token, and the audit actor.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub role: Role,
    /// `api:NAME`, and what the client says it is (`X-Provision-Actor`, for
    /// information only) when that differs.
    pub actor: String,
}

/// Checks the bearer token before anything else (the body included) is read.
pub(crate) async fn authenticate(
    Extract(state): Extract<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let Some((name, role)) = identify(&state.api.tokens, bearer) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            .into_response();
    };
    let claim: String = headers
        .get("x-provision-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let actor = if claim.is_empty() || claim == name {
        format!("api:{name}")
    } else {
        format!("api:{name} (says {claim})")
    };
    request
        .extensions_mut()
        .insert(Identity { name, role, actor });
    next.run(request).await
}

/// The name and role of the token `bearer`, if the API accepts it.
fn identify(tokens: &[Credential], bearer: &str) -> Option<(String, Role)> {
    if tokens.is_empty() {
        return Some(("anonymous".to_owned(), Role::Admin));
    }
    // Every token is compared, whichever matches: the time tells nothing.
    let mut found = None;
    for credential in tokens {
        if same(bearer, &credential.token) {
            found = Some((credential.name.clone(), credential.role));
        }
    }
    found
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The identity of a request whose token has at least role `R`; routes name the role
/// they need by taking `Needs<VIEWER>`, `Needs<OPERATOR>` or `Needs<ADMIN>`.
pub(crate) struct Needs<const R: u8>(pub Identity);

pub(crate) const VIEWER: u8 = 0;
pub(crate) const OPERATOR: u8 = 1;
pub(crate) const ADMIN: u8 = 2;

impl<const R: u8, S: Send + Sync> FromRequestParts<S> for Needs<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let needed = match R {
            VIEWER => Role::Viewer,
            OPERATOR => Role::Operator,
            _ => Role::Admin,
        };
        let who = parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not authenticated"))?;
        if who.role < needed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the token `{}` is a {:?} token; this needs {needed:?}",
                    who.name, who.role
                ),
            ));
        }
        Ok(Needs(who))
    }
}

/// Declares the bearer scheme in the OpenAPI document.
pub(crate) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("s3creT", "s3cret"));
    }
}
