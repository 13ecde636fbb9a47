//! Bearer token validation (OAuth 2.1 resource server) and the RFC 6750 / RFC
//! 9728 error responses.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::jwks::{KeyCache, KeyError};
use super::principal::Principal;
use crate::config::{SigningAlgorithm, TenantConfig};
use crate::envelope::ActorKind;

/// Clock skew tolerated for `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;
/// Longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A subject the host can key a user by: present, bounded, printable.
fn valid_subject(sub: &str) -> bool {
    !sub.is_empty() && sub.len() <= 255 && !sub.chars().any(char::is_control)
}

/// Why a request was not authorized. Descriptions are fixed strings: they never
/// echo the token or its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A credential in an unsupported form (another scheme, or the query string).
    BadRequest(&'static str),
    /// A bearer token that is not valid here.
    InvalidToken(&'static str),
    /// A valid token without the scopes this endpoint needs.
    InsufficientScope(String),
    /// The token's issuer has not given its keys yet and cannot be reached:
    /// the token could not be judged. Try again in `retry_after_s` seconds.
    IssuerUnavailable {
        /// Seconds until the next attempt to reach the issuer.
        retry_after_s: u64,
    },
}

/// What a challenge needs to point the client at.
#[derive(Debug)]
pub struct Challenge<'a> {
    /// The Protected Resource Metadata URL.
    pub resource_metadata: &'a str,
    /// The tenant's required scopes, space separated.
    pub scope: &'a str,
}

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl AuthError {
    /// Why, as a metrics label from a small fixed set (never from the token).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::BadRequest(_) => "bad_request",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::IssuerUnavailable { .. } => "issuer_unavailable",
            AuthError::InvalidToken(description) => match *description {
                "the token has expired" => "expired",
                "the token is not valid yet" => "not_yet_valid",
                "the token is not for this resource" => "wrong_audience",
                "the token's issuer is not trusted here" | "the token has no issuer" => {
                    "untrusted_issuer"
                }
                "the token's signature is invalid" => "bad_signature",
                "the token was signed with an unknown key" => "unknown_key",
                "the token's signature algorithm is not accepted" => "bad_algorithm",
                "the token's type (typ) is not an access token" => "wrong_type",
                "the token lacks a required claim" => "missing_claim",
                "the bearer token is malformed"
                | "the bearer token is not a valid JWT"
                | "the Authorization header is not valid text" => "malformed",
                _ => "invalid",
            },
        }
    }

    /// The HTTP response: status, `WWW-Authenticate` and a small JSON body;
    /// for an unreachable issuer, 503 with `Retry-After` and no challenge
    /// (the token was not found wanting, so there is nothing to fix).
    pub fn response(&self, challenge: &Challenge<'_>) -> Response {
        if let AuthError::IssuerUnavailable { retry_after_s } = self {
            let body = serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "the token's issuer cannot be reached to check it; try again later",
            });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            return response;
        }
        let mut params = Vec::new();
        let (status, error, description) = match self {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, None, "a bearer token is required"),
            AuthError::BadRequest(d) => (StatusCode::BAD_REQUEST, Some("invalid_request"), *d),
            AuthError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, Some("invalid_token"), *d),
            AuthError::InsufficientScope(_) => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                "the token lacks a required scope",
            ),
            AuthError::IssuerUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable"),
                "the token's issuer cannot be reached",
            ),
        };
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
            params.push(format!("error_description=\"{}\"", quoted(description)));
        }
        params.push(format!(
            "resource_metadata=\"{}\"",
            quoted(challenge.resource_metadata)
        ));
        let scope = match self {
            AuthError::InsufficientScope(needed) => needed.as_str(),
            _ => challenge.scope,
        };
        if !scope.is_empty() {
            params.push(format!("scope=\"{}\"", quoted(scope)));
        }
        let value = format!("Bearer {}", params.join(", "));
        let body = serde_json::json!({
            "error": error.unwrap_or("unauthorized"),
            "error_description": description,
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

/// The bearer token from the headers, refusing other forms.
pub fn bearer(headers: &HeaderMap, query: Option<&str>) -> Result<String, AuthError> {
    if let Some(q) = query
        && url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    {
        return Err(AuthError::BadRequest(
            "tokens in the query string are not accepted; use the Authorization header",
        ));
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::BadRequest("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // No bearer token was presented: challenge as if none were there.
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.contains(char::is_whitespace) {
        return Err(AuthError::InvalidToken("the bearer token is malformed"));
    }
    Ok(token.to_string())
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
    exp: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Spaced(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct Act {
    sub: Option<String>,
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    scope: Option<ScopeClaim>,
    scp: Option<ScopeClaim>,
    client_id: Option<String>,
    azp: Option<String>,
    act: Option<Act>,
}

fn algorithm(a: SigningAlgorithm) -> Algorithm {
    match a {
        SigningAlgorithm::Rs256 => Algorithm::RS256,
        SigningAlgorithm::Es256 => Algorithm::ES256,
        SigningAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

/// Read `iss` before verifying, only to choose which issuer's keys verify it.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Unverified>(&bytes).ok()?.iss
}

/// The `kid` of a token's header (read without verifying).
pub(super) fn unverified_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// The `exp` of a token (read without verifying: only for one that was).
pub(super) fn unverified_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Unverified>(&bytes).ok()?.exp
}

/// Validate `token` for `tenant`, whose endpoint's canonical URI is `resource`.
pub async fn validate(
    token: String,
    tenant_id: &str,
    tenant: &TenantConfig,
    resource: &str,
    keys: &KeyCache,
) -> Result<Principal, AuthError> {
    let header = jsonwebtoken::decode_header(&token)
        .map_err(|_| AuthError::InvalidToken("the bearer token is not a valid JWT"))?;

    let iss =
        unverified_issuer(&token).ok_or(AuthError::InvalidToken("the token has no issuer"))?;
    let issuer = tenant
        .issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or(AuthError::InvalidToken(
            "the token's issuer is not trusted here",
        ))?;
    // RFC 8725 §3.11: a JWT of another kind (a signed envelope, a DPoP
    // proof...) from the same issuer is not an access token.
    if let Some(typ) = &header.typ
        && !issuer
            .token_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(AuthError::InvalidToken(
            "the token's type (typ) is not an access token",
        ));
    }
    let allowed: Vec<Algorithm> = issuer.algorithms.iter().copied().map(algorithm).collect();
    if !allowed.contains(&header.alg) {
        return Err(AuthError::InvalidToken(
            "the token's signature algorithm is not accepted",
        ));
    }
    let issuer_keys = keys.issuer(&iss).ok_or(AuthError::InvalidToken(
        "the token's issuer is not trusted here",
    ))?;
    let key = issuer_keys
        .key(header.kid.as_deref())
        .await
        .map_err(|e| match e {
            KeyError::UnknownKid(_) => {
                AuthError::InvalidToken("the token was signed with an unknown key")
            }
            // Whole seconds, rounded up: never "retry now" while backing off.
            KeyError::Unavailable { retry_after } => AuthError::IssuerUnavailable {
                retry_after_s: retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
                    .max(1),
            },
        })?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&iss]);
    let mut audiences = vec![resource.to_string()];
    audiences.extend(tenant.extra_audiences.iter().cloned());
    validation.set_audience(&audiences);
    validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
        .into_iter()
        .map(String::from)
        .collect();
    let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        AuthError::InvalidToken(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::ImmatureSignature => "the token is not valid yet",
            ErrorKind::InvalidAudience => "the token is not for this resource",
            ErrorKind::InvalidIssuer => "the token's issuer is not trusted here",
            ErrorKind::InvalidSignature => "the token's signature is invalid",
            ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
            _ => "the token is invalid",
        })
    })?;
    let claims = data.claims;
    if !valid_subject(&claims.sub) {
        return Err(AuthError::InvalidToken(
            "the token's subject is empty, longer than 255 bytes or has control characters",
        ));
    }
    let scopes: BTreeSet<String> = match claims.scope.or(claims.scp) {
        Some(ScopeClaim::Spaced(s)) => s.split_whitespace().map(String::from).collect(),
        Some(ScopeClaim::List(l)) => l.into_iter().collect(),
        None => BTreeSet::new(),
    };
    let client_id = claims.client_id.or(claims.azp);
    // A client-credentials token names the client as its own subject.
    let actor_kind = if client_id.as_deref() == Some(claims.sub.as_str()) {
        ActorKind::Service
    } else {
        ActorKind::User
    };
    let agent_id = claims.act.and_then(|a| a.sub.or(a.client_id));
    let principal = Principal::new(
        tenant_id.to_string(),
        iss.to_string(),
        claims.sub,
        actor_kind,
        client_id,
        agent_id,
        scopes,
        token,
    );
    let missing: Vec<&str> = tenant
        .scopes
        .iter()
        .filter(|s| !principal.scopes().contains(*s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(AuthError::InsufficientScope(tenant.scopes.join(" ")));
    }
    Ok(principal)
}
