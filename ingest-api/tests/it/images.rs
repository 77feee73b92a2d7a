//! `POST /v1/images`: sniffed formats, dimension and byte limits, stored original and thumbnail,
//! and the `image.uploaded` action.

use std::io::Cursor;
use std::path::Path;

use axum::http::{Method, StatusCode};
use image::{DynamicImage, ImageFormat, RgbImage};
use philo_ingest_api::{ImageConfig, IngestConfig};
use serde_json::json;

use crate::harness::{Resp, Session, TestApp, action_json};

const BOUNDARY: &str = "philo-it-7d3a9c1e";

/// One part of a `multipart/form-data` body.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    data: &'a [u8],
}

fn file(data: &[u8]) -> Part<'_> {
    Part {
        name: "file",
        filename: Some("upload.bin"),
        data,
    }
}

fn text<'a>(name: &'a str, value: &'a str) -> Part<'a> {
    Part {
        name,
        filename: None,
        data: value.as_bytes(),
    }
}

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.filename {
            disposition.push_str(&format!(
                "; filename=\"{f}\"\r\nContent-Type: application/octet-stream"
            ));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: &TestApp, s: &Session, parts: &[Part<'_>]) -> Resp {
    app.call(
        Method::POST,
        "/v1/images",
        Some(&s.access),
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        &[],
        multipart(parts),
    )
    .await
}

fn encode(w: u32, h: u32, format: ImageFormat, noise: bool) -> Vec<u8> {
    let mut seed: u32 = 0x1234_5678;
    let img = RgbImage::from_fn(w, h, |x, y| {
        if noise {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let [a, b, c, _] = seed.to_le_bytes();
            image::Rgb([a, b, c])
        } else {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small valid PNG whose IHDR claims `w`×`h` (CRC fixed up, so only the size is a lie).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(1, 1, ImageFormat::Png, false);
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn png_and_jpeg_are_stored_with_a_thumbnail_and_announced() {
    let app = TestApp::new().await;
    let s = app.register("painter").await;
    for (format, ext, mime) in [
        (ImageFormat::Png, "png", "image/png"),
        (ImageFormat::Jpeg, "jpg", "image/jpeg"),
    ] {
        let bytes = encode(400, 300, format, false);
        let body = upload(&app, &s, &[text("purpose", "post"), file(&bytes)])
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(body["content_type"], mime);
        assert_eq!(
            (body["width"].as_u64(), body["height"].as_u64()),
            (Some(400), Some(300))
        );
        assert_eq!(body["size_bytes"], bytes.len());
        let image_id = body["image_id"].as_str().unwrap();
        let key = body["key"].as_str().unwrap();
        assert_eq!(key, format!("images/{}/{image_id}.{ext}", s.user_id));
        let thumb_key = body["thumbnail_key"].as_str().unwrap();
        assert_eq!(
            thumb_key,
            format!("images/{}/{image_id}.thumb.jpg", s.user_id)
        );

        let original = std::fs::read(app.objects_dir().join(key)).unwrap();
        assert_eq!(original, bytes, "the original is stored as uploaded");
        let thumb = std::fs::read(app.objects_dir().join(thumb_key)).unwrap();
        assert_eq!(image::guess_format(&thumb).unwrap(), ImageFormat::Jpeg);
        let t = image::load_from_memory(&thumb).unwrap();
        assert_eq!((t.width(), t.height()), (320, 240));

        let rec = app.record_at(body["position"].as_str().unwrap()).await;
        assert_eq!(rec.envelope.id.to_string(), image_id);
        assert_eq!(rec.envelope.actor_id, s.user_id);
        assert_eq!(
            action_json(&rec.envelope),
            json!({
                "type": "image.uploaded", "image_id": image_id, "purpose": "post",
                "content_type": mime, "width": 400, "height": 300,
                "size_bytes": bytes.len(), "thumbnail_key": thumb_key,
            })
        );
    }
    assert_eq!(app.records_of_kind("image.uploaded").await.len(), 2);
    assert_eq!(files_under(&app.objects_dir()).len(), 4);
}

#[tokio::test]
async fn refused_uploads_store_and_append_nothing() {
    let app = TestApp::with_config(IngestConfig {
        images: ImageConfig {
            max_bytes: 4096,
            ..ImageConfig::default()
        },
        ..IngestConfig::default()
    })
    .await;
    let s = app.register("vandal").await;
    let small = encode(16, 16, ImageFormat::Png, false);
    assert!(small.len() < 4096);
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    let noisy = encode(100, 100, ImageFormat::Png, true);
    assert!(noisy.len() > 4096 && noisy.len() < 4096 + 64 * 1024);
    let way_too_big = vec![0u8; 200 * 1024];

    let cases: Vec<(Vec<Part<'_>>, StatusCode, &str, Option<&str>)> = vec![
        (
            vec![text("purpose", "post"), file(gif)],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image_type",
            Some("file"),
        ),
        (
            vec![
                text("purpose", "post"),
                file(b"just some text, not an image"),
            ],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image_type",
            Some("file"),
        ),
        (
            vec![text("purpose", "post"), file(&small[..small.len() / 2])],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
            Some("file"),
        ),
        (
            vec![text("purpose", "selfie"), file(&small)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("purpose"),
        ),
        (
            vec![text("purpose", "post")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            Some("file"),
        ),
        (
            vec![file(&small)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            Some("purpose"),
        ),
        (
            vec![text("purpose", "post"), file(&small), text("caption", "hi")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("caption"),
        ),
        (
            vec![text("purpose", "post"), file(&noisy)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            Some("file"),
        ),
        (
            vec![text("purpose", "post"), file(&way_too_big)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
    ];
    for (parts, status, code, field) in cases {
        let body = upload(&app, &s, &parts).await.expect_error(status, code);
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{body}");
        }
    }

    // Not a form at all, or no token.
    app.call(
        Method::POST,
        "/v1/images",
        Some(&s.access),
        Some("application/json"),
        &[],
        "{}",
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.call(
        Method::POST,
        "/v1/images",
        None,
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        &[],
        multipart(&[text("purpose", "post"), file(&small)]),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "missing_token");

    assert!(app.records_of_kind("image.uploaded").await.is_empty());
    assert!(files_under(&app.objects_dir()).is_empty());
    // The same small image with a good purpose is fine.
    upload(&app, &s, &[text("purpose", "avatar"), file(&small)])
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn dimensions_are_checked_from_the_header() {
    let app = TestApp::new().await;
    let s = app.register("giant").await;
    // 20000 × 20000 is over the side limit; 7000 × 7000 is over the pixel limit only.
    for (w, h) in [(20_000, 20_000), (7_000, 7_000), (100, 13_000)] {
        let png = png_claiming(w, h);
        assert!(png.len() < 200, "a few bytes claim a huge image");
        let body = upload(&app, &s, &[text("purpose", "post"), file(&png)])
            .await
            .expect_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "image_dimensions_too_large",
            );
        assert_eq!(body["field"], "file");
    }
    assert!(app.records_of_kind("image.uploaded").await.is_empty());
    assert!(files_under(&app.objects_dir()).is_empty());
}

#[tokio::test]
async fn a_small_max_side_refuses_a_real_image() {
    let app = TestApp::with_config(IngestConfig {
        images: ImageConfig {
            max_side: 64,
            ..ImageConfig::default()
        },
        ..IngestConfig::default()
    })
    .await;
    let s = app.register("bounded").await;
    let big = encode(100, 100, ImageFormat::Jpeg, false);
    upload(&app, &s, &[text("purpose", "event"), file(&big)])
        .await
        .expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_dimensions_too_large",
        );
    let ok = encode(64, 40, ImageFormat::Jpeg, false);
    let body = upload(&app, &s, &[text("purpose", "event"), file(&ok)])
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(64), Some(40))
    );
    assert_eq!(app.records_of_kind("image.uploaded").await.len(), 1);
}
