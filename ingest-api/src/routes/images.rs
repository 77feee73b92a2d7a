//! `POST /v1/images`: sniffed, bounded image uploads stored through `object_store`, with a
//! thumbnail, announced by an `image.uploaded` action.

use std::io::Cursor;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use image::{ImageFormat, ImageReader, Limits};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use philo_events::log::ACTIONS_TOPIC;
use philo_events::{Action, Envelope, new_action_id};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::ImageConfig;
use crate::error::{ApiError, ErrorBody};
use crate::extract::AuthUser;
use crate::routes::actions::{json, record_of, trace_context};
use crate::state::AppState;

/// A stored image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageUploaded {
    pub image_id: Uuid,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    /// Object key of the original.
    pub key: String,
    /// Object key of the JPEG thumbnail.
    pub thumbnail_key: String,
    pub position: String,
}

/// The multipart form (for the OpenAPI document).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ImageForm {
    /// PNG, JPEG or WebP bytes (detected from the content, not the file name).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// avatar | post | approach | event | resume | other
    purpose: String,
}

struct Processed {
    format: ImageFormat,
    width: u32,
    height: u32,
    thumbnail: Vec<u8>,
}

fn process(bytes: &[u8], limits: &ImageConfig) -> Result<Processed, ApiError> {
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => f,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_image_type",
                "only PNG, JPEG and WebP images are accepted",
            )
            .field("file"));
        }
    };
    let invalid = |e: image::ImageError| {
        ApiError::unprocessable("invalid_image", format!("the image cannot be decoded: {e}"))
            .field("file")
    };
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        let mut l = Limits::default();
        l.max_image_width = Some(limits.max_side);
        l.max_image_height = Some(limits.max_side);
        l.max_alloc = Some(limits.max_pixels.saturating_mul(4) + (64 << 20));
        r.limits(l);
        r
    };
    // Check the header's dimensions before decoding a single pixel.
    let (width, height) = reader().into_dimensions().map_err(|e| match e {
        image::ImageError::Limits(_) => too_big(limits),
        e => invalid(e),
    })?;
    if width == 0 || height == 0 {
        return Err(
            ApiError::unprocessable("invalid_image", "the image has no pixels").field("file"),
        );
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels
        || width > limits.max_side
        || height > limits.max_side
    {
        return Err(too_big(limits));
    }
    let decoded = reader().decode().map_err(|e| match e {
        image::ImageError::Limits(_) => too_big(limits),
        e => invalid(e),
    })?;
    let thumb = decoded
        .thumbnail(limits.thumbnail_side, limits.thumbnail_side)
        .to_rgb8();
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, 80)
        .encode_image(&thumb)
        .map_err(|e| ApiError::internal(format!("thumbnail encoding failed: {e}")))?;
    Ok(Processed {
        format,
        width,
        height,
        thumbnail,
    })
}

fn too_big(limits: &ImageConfig) -> ApiError {
    ApiError::unprocessable(
        "image_dimensions_too_large",
        format!(
            "images may have at most {} pixels and {} per side",
            limits.max_pixels, limits.max_side
        ),
    )
    .field("file")
}

#[utoipa::path(post, path = "/v1/images", tag = "ingest",
    description = "Upload a PNG, JPEG or WebP image (multipart fields `file` and `purpose`). The format is detected from the bytes; size and pixel limits apply. A JPEG thumbnail is generated and `image.uploaded` is appended.",
    request_body(content = ImageForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = ImageUploaded),
        (status = 400, description = "Not a multipart form", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than the byte limit", body = ErrorBody),
        (status = 415, description = "Not PNG/JPEG/WebP", body = ErrorBody),
        (status = 422, description = "Undecodable, too many pixels, bad purpose, missing field", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    state.limits.check_user(claims.sub, 1)?;
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected multipart/form-data: {}", e.body_text()),
        )
    })?;
    let max = state.config.images.max_bytes;
    let mut file: Option<Bytes> = None;
    let mut purpose: Option<String> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max))?
    {
        match field.name() {
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, max))?;
                if bytes.len() > max {
                    return Err(ApiError::too_large(
                        "payload_too_large",
                        format!("images are at most {max} bytes"),
                    )
                    .field("file"));
                }
                file = Some(bytes);
            }
            Some("purpose") => {
                let text = field.text().await.map_err(|e| multipart_error(e, max))?;
                purpose = Some(text.chars().take(64).collect());
            }
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "unknown_field",
                    format!("unknown form field `{other}`"),
                )
                .field(other.to_owned()));
            }
            None => {
                return Err(ApiError::unprocessable(
                    "unknown_field",
                    "unnamed form field",
                ));
            }
        }
    }
    let file = file.ok_or_else(|| {
        ApiError::unprocessable("missing_field", "the `file` field is required").field("file")
    })?;
    let purpose = purpose.ok_or_else(|| {
        ApiError::unprocessable("missing_field", "the `purpose` field is required").field("purpose")
    })?;

    let config = state.config.images.clone();
    let bytes = file.clone();
    let processed = tokio::task::spawn_blocking(move || process(&bytes, &config))
        .await
        .map_err(|e| ApiError::internal(format!("image task failed: {e}")))??;

    let now = state.clock.now();
    let image_id = new_action_id(now);
    let ext = processed.format.extensions_str()[0];
    let key = format!("images/{}/{image_id}.{ext}", claims.sub);
    let thumbnail_key = format!("images/{}/{image_id}.thumb.jpg", claims.sub);
    let content_type = processed.format.to_mime_type().to_owned();
    // Build (and so validate) the action before storing anything.
    let action = Action::from_value(serde_json::json!({
        "type": "image.uploaded",
        "image_id": image_id,
        "purpose": purpose,
        "content_type": content_type,
        "width": processed.width,
        "height": processed.height,
        "size_bytes": file.len() as u64,
        "thumbnail_key": thumbnail_key,
    }))
    .map_err(|mut e| {
        if e.field.as_deref() == Some("purpose") || e.code == "invalid_value" {
            e.field = Some("purpose".into());
        }
        ApiError::from(e)
    })?;
    action.validate(now)?;

    let store_err = |e: object_store::Error| {
        ApiError::unavailable(
            "image_store_unavailable",
            format!("storing the image failed: {e}"),
        )
    };
    state
        .images
        .put(
            &ObjectPath::from(key.as_str()),
            PutPayload::from_bytes(file.clone()),
        )
        .await
        .map_err(store_err)?;
    state
        .images
        .put(
            &ObjectPath::from(thumbnail_key.as_str()),
            PutPayload::from(processed.thumbnail),
        )
        .await
        .map_err(store_err)?;

    let env = Envelope::with_id(image_id, claims.sub, action, now);
    let position = state
        .log
        .append(
            ACTIONS_TOPIC,
            vec![record_of(&env, &trace_context(Some(&headers)))],
        )
        .await?[0];
    Ok(json(
        StatusCode::CREATED,
        ImageUploaded {
            image_id,
            content_type,
            width: processed.width,
            height: processed.height,
            size_bytes: file.len() as u64,
            key,
            thumbnail_key,
            position: position.to_string(),
        },
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(
            "payload_too_large",
            format!("images are at most {max} bytes"),
        )
    } else {
        ApiError::bad_request("invalid_multipart", e.body_text())
    }
}
