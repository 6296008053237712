//! Image upload and serving over HTTP: the type decided by the bytes, the size and pixel
//! limits, keys the server makes, and nothing stored for a refused upload.

#![expect(clippy::unwrap_used, reason = "test code")]

mod common;

use actix_web::test;
use common::*;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../moments-testkit/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

const BOUNDARY: &str = "moments-test-boundary-7d3f";

/// A multipart/form-data request with one file part.
fn upload(
    token: &str,
    field: &str,
    filename: &str,
    declared: &str,
    bytes: &[u8],
) -> test::TestRequest {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
         Content-Type: {declared}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    with_token(
        test::TestRequest::post()
            .uri("/api/v1/media")
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ))
            .set_payload(body),
        token,
    )
}

/// The files in the media directory.
fn stored(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("media"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn media_app(settings: &[(&str, String)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("MOMENTS_JWT_SECRET", SECRET.to_owned())];
    all.extend(settings.iter().cloned());
    (app_in(dir.path(), &all).await, dir)
}

#[actix_web::test]
async fn each_accepted_format_is_stored_and_served_with_its_type() {
    let (t, dir) = media_app(&[]).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "uploader").await;
    let token = login(&app, "uploader").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, content_type) in [
        ("tiny.png", "image/png"),
        ("tiny.jpg", "image/jpeg"),
        ("tiny.gif", "image/gif"),
        ("tiny.webp", "image/webp"),
        ("tiny-lossless.webp", "image/webp"),
    ] {
        let bytes = fixture(name);
        let reply = send(
            &app,
            upload(&token, "file", name, "application/octet-stream", &bytes),
        )
        .await;
        assert_eq!(reply.status, 201, "{name}: {:#}", reply.body);
        assert_eq!(reply.body["content_type"], content_type);
        assert_eq!(reply.body["size"], bytes.len());
        assert_eq!(
            (reply.body["width"].clone(), reply.body["height"].clone()),
            (json!(3), json!(2))
        );
        let url = reply.body["url"].as_str().unwrap();
        assert!(url.starts_with("http://127.0.0.1:8080/media/"), "{url}");
        assert_eq!(reply.header("location"), Some(url));
        let path = url.trim_start_matches("http://127.0.0.1:8080");
        let served = send(&app, test::TestRequest::get().uri(path)).await;
        assert_eq!(served.status, 200);
        assert_eq!(served.raw, bytes, "{name} served byte for byte");
        assert_eq!(served.header("content-type"), Some(content_type));
        assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            served.header("content-security-policy"),
            Some("default-src 'none'; sandbox")
        );
        // The id is a UUIDv7, and the key is that id and the type's extension.
        let id = reply.body["id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    }
    assert_eq!(stored(dir.path()).len(), 5);

    // An uploaded image's URL is what a post carries.
    let reply = send(
        &app,
        upload(&token, "file", "a.png", "image/png", &fixture("tiny.png")),
    )
    .await;
    let req = test::TestRequest::post()
        .uri("/api/v1/posts")
        .set_json(json!({"content": "look", "media_urls": [reply.body["url"]]}));
    let post = send(&app, with_token(req, &token)).await;
    assert_eq!(post.status, 201, "{:#}", post.body);
    assert_eq!(post.body["media_urls"][0], reply.body["url"]);
}

#[actix_web::test]
async fn names_and_declared_types_are_ignored_and_bad_content_is_refused() {
    let (t, dir) = media_app(&[]).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "tricky").await;
    let token = login(&app, "tricky").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A PNG named .jpg and declared as JPEG is a PNG.
    let png = send(
        &app,
        upload(
            &token,
            "file",
            "photo.jpg",
            "image/jpeg",
            &fixture("tiny.png"),
        ),
    )
    .await;
    assert_eq!(png.status, 201, "{:#}", png.body);
    assert_eq!(png.body["content_type"], "image/png");
    assert!(png.body["url"].as_str().unwrap().ends_with(".png"));
    // A path as the file name plays no part in where it is stored.
    let traversal = send(
        &app,
        upload(
            &token,
            "file",
            "../../etc/passwd",
            "image/png",
            &fixture("tiny.png"),
        ),
    )
    .await;
    assert_eq!(traversal.status, 201);
    let key = traversal.body["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(!key.contains("passwd") && !key.contains(".."), "{key}");
    let kept = stored(dir.path());
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&key));
    assert!(!dir.path().join("etc").exists());

    // An HTML page named .png, and a PNG with a page appended: not images; nothing stored.
    for (name, bytes) in [
        ("page.png", fixture("page.html")),
        ("poly.png", fixture("polyglot.png")),
    ] {
        send(&app, upload(&token, "file", name, "image/png", &bytes))
            .await
            .problem(415, "unsupported_media_type");
    }
    assert_eq!(
        stored(dir.path()),
        kept,
        "nothing stored for refused uploads"
    );

    // A pixel bomb: small file, 10 000 megapixels claimed.
    let bomb = send(
        &app,
        upload(
            &token,
            "file",
            "bomb.png",
            "image/png",
            &fixture("bomb.png"),
        ),
    )
    .await;
    assert_eq!(
        bomb.field_errors(),
        [("file".into(), "too_many_pixels".into())]
    );
    assert_eq!(stored(dir.path()), kept);

    // Over the default 10 MiB: refused while reading.
    let mut huge = fixture("tiny.png");
    huge.resize(10 * 1024 * 1024 + 1, 0);
    send(&app, upload(&token, "file", "huge.png", "image/png", &huge))
        .await
        .problem(413, "payload_too_large");
    assert_eq!(stored(dir.path()), kept);

    // The form: one field, named `file`; multipart only; a user's access token only.
    let other = send(
        &app,
        upload(&token, "image", "a.png", "image/png", &fixture("tiny.png")),
    )
    .await;
    assert_eq!(
        other.field_errors(),
        [("image".into(), "unknown_field".into())]
    );
    let empty_form = with_token(
        test::TestRequest::post()
            .uri("/api/v1/media")
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ))
            .set_payload(format!("--{BOUNDARY}--\r\n")),
        &token,
    );
    assert_eq!(
        send(&app, empty_form).await.field_errors(),
        [("file".into(), "required".into())]
    );
    let json_body = with_token(
        test::TestRequest::post()
            .uri("/api/v1/media")
            .set_json(json!({"file": "x"})),
        &token,
    );
    send(&app, json_body)
        .await
        .problem(415, "unsupported_media_type");
    let anonymous = test::TestRequest::post().uri("/api/v1/media");
    send(&app, anonymous).await.problem(401, "unauthenticated");
    assert_eq!(stored(dir.path()), kept);

    for path in [
        "/media/0123456789abcdef0123456789abcdef.png",
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/passwd",
    ] {
        get(&app, path, None).await.problem(404, "not_found");
    }
}

#[actix_web::test]
async fn the_size_limit_is_configurable() {
    let (t, dir) = media_app(&[("MOMENTS_MEDIA_MAX_BYTES", "2048".into())]).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "limited").await;
    let token = login(&app, "limited").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let small = send(
        &app,
        upload(&token, "file", "a.png", "image/png", &fixture("tiny.png")),
    )
    .await;
    assert_eq!(small.status, 201);
    let mut big = fixture("tiny.jpg");
    big.resize(2049, 0);
    send(&app, upload(&token, "file", "b.jpg", "image/jpeg", &big))
        .await
        .problem(413, "payload_too_large");
    assert_eq!(stored(dir.path()).len(), 1);
}
