//! Route table: one `OpenApiRouter` per body-size class, merged, with the shared layers.

pub mod actions;
pub mod admin;
pub mod auth;
pub mod images;
pub mod meta;
pub mod notifications;
pub mod reads;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Philo ingest API", description = "Product-facing API of Philo: accounts, action ingest and the reads derived from the log. Every error body is `ErrorBody` with a stable `code`."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags((name = "auth"), (name = "ingest"), (name = "reads"), (name = "notifications"), (name = "admin"), (name = "ops"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The routes and their OpenAPI document.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let c = &state.config;
    let small = OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(actions::post_action))
        .layer(DefaultBodyLimit::max(c.max_action_bytes.max(16 * 1024)));
    let batch = OpenApiRouter::new()
        .routes(routes!(actions::post_batch))
        .layer(DefaultBodyLimit::max(c.max_batch_bytes));
    let images = OpenApiRouter::new()
        .routes(routes!(images::upload))
        .layer(DefaultBodyLimit::max(c.images.max_bytes + 64 * 1024));
    let reads = OpenApiRouter::new()
        .routes(routes!(reads::feed))
        .routes(routes!(reads::followers))
        .routes(routes!(reads::following))
        .routes(routes!(reads::profile))
        .routes(routes!(reads::post))
        .routes(routes!(reads::approach))
        .routes(routes!(reads::event))
        .routes(routes!(reads::campaign))
        .routes(routes!(reads::job_offers));
    let notifications = OpenApiRouter::new()
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::unread_count))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(
            notifications::preferences,
            notifications::update_preferences
        ))
        .routes(routes!(notifications::live::stream))
        .layer(DefaultBodyLimit::max(c.max_action_bytes.max(16 * 1024)));
    let ops = OpenApiRouter::new()
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::schema))
        .routes(routes!(admin::log_info))
        .routes(routes!(admin::read_log))
        .routes(routes!(admin::erase_user))
        .routes(routes!(admin::erasure_receipt));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(small)
        .merge(batch)
        .merge(images)
        .merge(reads)
        .merge(notifications)
        .merge(ops)
        .split_for_parts()
}

/// The full application: routes, `/openapi.json`, JSON 404/405, panic guard, metrics, tracing.
pub fn router(state: AppState) -> Router {
    let (routes, openapi) = api(&state);
    let doc = Arc::new(serde_json::to_value(&openapi).expect("OpenAPI document serialises"));
    routes
        .route(
            "/openapi.json",
            get(move || async move { axum::Json((*doc).clone()) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal("internal error").into_response()
}
