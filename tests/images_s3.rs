//! Images through a real S3 API (moto's server): `philo up` configured only through the
//! documented `images.store_url` / `images.store_options` settings stores the original and the
//! thumbnail in the bucket.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;

use base64::Engine;
use object_store::ObjectStoreExt;

/// A valid 1×1 PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn multipart(png: &[u8]) -> (String, Vec<u8>) {
    let boundary = "philo-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\navatar\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(png);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_land_in_a_real_s3_bucket() {
    let Some(moto) = common::moto_binary() else {
        return;
    };
    let client = reqwest::Client::new();
    let (_moto, s3) = common::start_moto(&moto, "philo-images").await;

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (server, base) = common::start(
        dir.path(),
        &[
            ("PHILO__IMAGES__STORE_URL", "s3://philo-images/uploads"),
            ("PHILO__IMAGES__STORE_OPTIONS__AWS_ENDPOINT", &s3),
            ("PHILO__IMAGES__STORE_OPTIONS__AWS_REGION", "us-east-1"),
            ("PHILO__IMAGES__STORE_OPTIONS__AWS_ACCESS_KEY_ID", "test"),
            (
                "PHILO__IMAGES__STORE_OPTIONS__AWS_SECRET_ACCESS_KEY",
                "test",
            ),
            ("PHILO__IMAGES__STORE_OPTIONS__AWS_ALLOW_HTTP", "true"),
        ],
    );
    let _server = common::Guard::new(server); // killed on drop, also when an assertion fails
    let token = common::register(&client, &base, "painter", "a picture is worth").await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_1X1)
        .unwrap();
    let (content_type, body) = multipart(&png);
    let r = client
        .post(format!("{base}/v1/images"))
        .bearer_auth(&token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let uploaded: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(
        (uploaded["width"].as_u64(), uploaded["height"].as_u64()),
        (Some(1), Some(1))
    );

    // Read both objects back with a signed S3 client of our own.
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("philo-images")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let get = |key: String| {
        let bucket = &bucket;
        async move {
            let path = object_store::path::Path::from(format!("uploads/{key}"));
            bucket
                .get(&path)
                .await
                .expect("object in the bucket")
                .bytes()
                .await
                .unwrap()
        }
    };
    let original = get(uploaded["key"].as_str().unwrap().to_owned()).await;
    assert_eq!(original.as_ref(), png.as_slice());
    let thumb = get(uploaded["thumbnail_key"].as_str().unwrap().to_owned()).await;
    assert_eq!(&thumb[..3], &[0xff, 0xd8, 0xff], "the thumbnail is a JPEG");
}
