//! `/v1/auth/*`: register, login, refresh, logout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use philo_accounts::{NewUser, Role, TokenPair, User};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, AuthUser};
use crate::outbox;
use crate::routes::actions::json;
use crate::state::AppState;

/// The caller's network address (loopback when the server runs without connect info).
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip()),
        ))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters `[A-Za-z0-9_]`, starting with a letter; unique, case-insensitively.
    pub username: String,
    /// Unique, case-insensitively.
    pub email: String,
    /// 10–256 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// `user` (default) or `procurer`. Admins are created with the CLI only.
    #[serde(default)]
    pub role: Option<RequestedRole>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestedRole {
    User,
    Procurer,
    Admin,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or email, case-insensitive.
    pub login: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Tokens for a signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub user_id: Uuid,
    /// Short-lived JWT (HS256) for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single-use; exchange at `/v1/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub token_type: String,
}

fn tokens(user: &User, pair: TokenPair) -> TokenResponse {
    TokenResponse {
        user_id: user.id,
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        expires_in: pair.expires_in,
        token_type: "Bearer".into(),
    }
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = TokenResponse),
        (status = 400, body = ErrorBody), (status = 403, description = "Role not allowed", body = ErrorBody),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    state.limits.check_auth(addr)?;
    let role = match req.role.unwrap_or(RequestedRole::User) {
        RequestedRole::User => Role::User,
        RequestedRole::Procurer => Role::Procurer,
        RequestedRole::Admin => Role::Admin,
    };
    let (user, pair) = state
        .accounts
        .register(NewUser {
            username: req.username,
            email: req.email,
            password: req.password,
            role,
        })
        .await?;
    outbox::drain(&state).await;
    Ok(json(StatusCode::CREATED, tokens(&user, pair)))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "Wrong login or password", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    state.limits.check_auth(addr)?;
    let (user, pair) = state.accounts.login(&req.login, &req.password).await?;
    outbox::drain(&state).await;
    Ok(json(StatusCode::OK, tokens(&user, pair)))
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token (reuse revokes the session)", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    state.limits.check_auth(addr)?;
    let (user, pair) = state.accounts.refresh(&req.refresh_token).await?;
    Ok(json(StatusCode::OK, tokens(&user, pair)))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    description = "Revokes the caller's session: its refresh tokens and access tokens stop working.",
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Response, ApiError> {
    state.accounts.logout(&claims).await?;
    outbox::drain(&state).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
