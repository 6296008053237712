//! The media store contract: what every `MediaStore` adapter (local disk, S3-compatible) must
//! do. `media_contract_tests!` turns each case into a test for an adapter.

use std::sync::Arc;

use futures_util::future::join_all;
use moments_domain::media::{ImageKind, MediaKey, MediaStore};
use uuid::Uuid;

/// A media store to test, with whatever keeps it alive until the test ends.
pub struct MediaUnderTest {
    /// The store.
    pub store: Arc<dyn MediaStore>,
    /// Dropped at the end of the test.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for MediaUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaUnderTest")
    }
}

/// Generates one `#[tokio::test]` per media contract case. `$make` is an async expression
/// giving `Option<MediaUnderTest>`; `None` skips the case (service unreachable, not required).
#[macro_export]
macro_rules! media_contract_tests {
    ($make:expr) => {
        $crate::media_contract_tests!(@cases $make;
            media_round_trips_byte_for_byte,
            deleted_media_is_gone,
            concurrent_uploads_are_all_kept,
            the_store_reports_ready,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(media) = $make.await else { return };
                $crate::media_contract::$case(&media).await;
            }
        )+
    };
}

fn key(kind: ImageKind) -> MediaKey {
    MediaKey::new(Uuid::now_v7(), kind)
}

/// Every byte comes back (all 256 values, 1 MiB); an unknown key is `None`.
pub async fn media_round_trips_byte_for_byte(media: &MediaUnderTest) {
    let bytes: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let stored = key(ImageKind::Png);
    media.store.put(&stored, bytes.clone()).await.unwrap();
    assert_eq!(media.store.get(&stored).await.unwrap(), Some(bytes));
    assert_eq!(media.store.get(&key(ImageKind::Png)).await.unwrap(), None);
    let empty_neighbour = key(ImageKind::Gif);
    media.store.put(&empty_neighbour, vec![7]).await.unwrap();
    assert_eq!(
        media.store.get(&empty_neighbour).await.unwrap(),
        Some(vec![7])
    );
}

/// Deleting removes the object once.
pub async fn deleted_media_is_gone(media: &MediaUnderTest) {
    let stored = key(ImageKind::Jpeg);
    media.store.put(&stored, b"jpeg".to_vec()).await.unwrap();
    assert!(media.store.delete(&stored).await.unwrap());
    assert!(!media.store.delete(&stored).await.unwrap());
    assert_eq!(media.store.get(&stored).await.unwrap(), None);
}

/// Twenty uploads at once are all kept, each with its own bytes.
pub async fn concurrent_uploads_are_all_kept(media: &MediaUnderTest) {
    let uploads: Vec<(MediaKey, Vec<u8>)> = (0..20_u8)
        .map(|i| (key(ImageKind::Webp), vec![i; 1000 + usize::from(i)]))
        .collect();
    let results = join_all(
        uploads
            .iter()
            .map(|(k, bytes)| media.store.put(k, bytes.clone())),
    )
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (k, bytes) in &uploads {
        assert_eq!(media.store.get(k).await.unwrap().as_ref(), Some(bytes));
    }
}

/// A working store says so.
pub async fn the_store_reports_ready(media: &MediaUnderTest) {
    media.store.check().await.unwrap();
}
