//! The media store contract on local disk (a fresh directory per test) and on a real
//! S3-compatible server (a fresh bucket per test).
//!
//! The S3 cases use `MOMENTS_TEST_S3_ENDPOINT` (default `http://127.0.0.1:5055`, where `.ci/run`
//! starts `moto_server`). When nothing answers there the cases are skipped with a loud message,
//! unless `MOMENTS_TEST_REQUIRE_SERVICES=1`, which makes that a failure.

#![expect(clippy::unwrap_used, reason = "test setup")]

use std::sync::Arc;

use moments_media::{LocalMediaStore, ObjectMediaStore};
use moments_testkit::media_contract::MediaUnderTest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod local {
    use super::*;

    async fn local_store() -> Option<MediaUnderTest> {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path().join("media")).unwrap();
        Some(MediaUnderTest {
            store: Arc::new(store),
            guard: Box::new(dir),
        })
    }

    moments_testkit::media_contract_tests!(local_store());

    #[tokio::test]
    async fn nothing_but_the_object_is_left_in_the_directory() {
        use moments_domain::media::{ImageKind, MediaKey, MediaStore as _};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path()).unwrap();
        let key = MediaKey::new(uuid::Uuid::now_v7(), ImageKind::Png);
        store.put(&key, vec![1, 2, 3]).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [key.as_str()], "no temporary file left behind");
    }
}

mod s3 {
    use super::*;

    fn endpoint() -> String {
        std::env::var("MOMENTS_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
    }

    /// Creates a bucket with a plain `PUT /bucket` (the S3 CreateBucket call; moto accepts it
    /// unsigned). `None` when nothing answers.
    async fn create_bucket(endpoint: &str, bucket: &str) -> Option<()> {
        let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.ok()?;
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "creating {bucket}: {reply}"
        );
        Some(())
    }

    async fn s3_store() -> Option<MediaUnderTest> {
        let endpoint = endpoint();
        let bucket = format!("moments-{}", uuid::Uuid::new_v4().simple());
        if create_bucket(&endpoint, &bucket).await.is_none() {
            assert!(
                std::env::var("MOMENTS_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "no S3-compatible server at {endpoint}, and MOMENTS_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!(
                "SKIPPED: S3 media store cases: nothing answers at {endpoint} \
                 (start one with `moto_server -p 5055`)"
            );
            return None;
        }
        let store = ObjectMediaStore::from_url(
            &format!("s3://{bucket}/uploads"),
            [
                ("aws_endpoint", endpoint.as_str()),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "moments-test"),
                ("aws_secret_access_key", "moments-test-secret"),
            ],
        )
        .unwrap();
        Some(MediaUnderTest {
            store: Arc::new(store),
            guard: Box::new(()),
        })
    }

    moments_testkit::media_contract_tests!(s3_store());
}
