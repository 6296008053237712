//! Uploaded images: their type decided by their bytes, their size and pixel count bounded,
//! stored under a key the server makes.
//!
//! [`inspect`] reads only what it must of the four accepted formats (PNG, JPEG, GIF, WebP) to
//! learn the dimensions, and insists that the file ends where the format says it ends: an HTML
//! page or a script appended to an image (a polyglot) is refused, not stored. Nothing is
//! decoded, so a decompression bomb costs nothing to refuse: its header states its size.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::InfraError;
use crate::ports::IdGenerator;

/// The accepted image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG (baseline or progressive).
    Jpeg,
    /// GIF (87a or 89a).
    Gif,
    /// WebP (lossy, lossless or extended).
    Webp,
}

impl ImageKind {
    /// The media type served with it.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// The extension of its storage key.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        [Self::Png, Self::Jpeg, Self::Gif, Self::Webp]
            .into_iter()
            .find(|kind| kind.extension() == ext)
    }
}

/// What [`inspect`] learnt of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Its format.
    pub kind: ImageKind,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl ImageInfo {
    /// Width times height.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Why bytes are not an acceptable image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not PNG, JPEG, GIF or WebP, or not a well-formed one (truncated, or with data after its
    /// end).
    #[error("not a well-formed PNG, JPEG, GIF or WebP image: {0}")]
    Unsupported(&'static str),
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at + 3)?;
    Some(u32::from(bytes[0]) | u32::from(bytes[1]) << 8 | u32::from(bytes[2]) << 16)
}

/// PNG: the signature, `IHDR` first, chunks walked to `IEND`, which must end the file.
fn png(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let bad = ImageError::Unsupported;
    if b.get(12..16) != Some(b"IHDR") || be32(b, 8) != Some(13) {
        return Err(bad("PNG without a header chunk"));
    }
    let (width, height) = (be32(b, 16).unwrap_or(0), be32(b, 20).unwrap_or(0));
    let mut at = 8_usize;
    let mut image_data = false;
    loop {
        let length = be32(b, at).ok_or(bad("truncated PNG"))? as usize;
        let kind = b.get(at + 4..at + 8).ok_or(bad("truncated PNG"))?;
        let end = at
            .checked_add(12)
            .and_then(|n| n.checked_add(length))
            .filter(|&end| end <= b.len())
            .ok_or(bad("truncated PNG"))?;
        image_data |= kind == b"IDAT";
        if kind == b"IEND" {
            if end != b.len() {
                return Err(bad("data after the end of the PNG"));
            }
            break;
        }
        at = end;
    }
    if !image_data {
        return Err(bad("PNG without image data"));
    }
    Ok((width, height))
}

/// JPEG: segments walked to the first frame header for the size; the file must end with the
/// end-of-image marker.
fn jpeg(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let bad = ImageError::Unsupported;
    if !b.ends_with(&[0xFF, 0xD9]) {
        return Err(bad("data after the end of the JPEG, or truncated"));
    }
    let mut at = 2_usize;
    loop {
        if b.get(at) != Some(&0xFF) {
            return Err(bad("malformed JPEG segment"));
        }
        let marker = *b.get(at + 1).ok_or(bad("truncated JPEG"))?;
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            0xD8..=0xDA => return Err(bad("JPEG without a frame header")),
            // Start of frame: precision, height, width.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let height = be16(b, at + 5).ok_or(bad("truncated JPEG"))?;
                let width = be16(b, at + 7).ok_or(bad("truncated JPEG"))?;
                return Ok((width, height));
            }
            _ => {
                let length = be16(b, at + 2).ok_or(bad("truncated JPEG"))? as usize;
                if length < 2 {
                    return Err(bad("malformed JPEG segment"));
                }
                at += 2 + length;
            }
        }
    }
}

/// GIF: the logical screen's size; the file must end with the trailer byte.
fn gif(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let bad = ImageError::Unsupported;
    if b.len() < 14 || b.last() != Some(&0x3B) {
        return Err(bad("data after the end of the GIF, or truncated"));
    }
    Ok((le16(b, 6).unwrap_or(0), le16(b, 8).unwrap_or(0)))
}

/// WebP: the RIFF size must be the file's; the size from the first chunk.
fn webp(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let bad = ImageError::Unsupported;
    let riff = le32(b, 4).ok_or(bad("truncated WebP"))? as usize;
    if riff.checked_add(8) != Some(b.len()) {
        return Err(bad("the WebP's size does not match the file"));
    }
    match b.get(12..16) {
        Some(b"VP8X") => Ok((
            le24(b, 24).ok_or(bad("truncated WebP"))? + 1,
            le24(b, 27).ok_or(bad("truncated WebP"))? + 1,
        )),
        Some(b"VP8L") => {
            if b.get(20) != Some(&0x2F) {
                return Err(bad("malformed lossless WebP"));
            }
            let bits = le32(b, 21).ok_or(bad("truncated WebP"))?;
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        Some(b"VP8 ") => {
            if b.get(23..26) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(bad("malformed lossy WebP"));
            }
            Ok((
                le16(b, 26).ok_or(bad("truncated WebP"))? & 0x3FFF,
                le16(b, 28).ok_or(bad("truncated WebP"))? & 0x3FFF,
            ))
        }
        _ => Err(bad("unknown WebP chunk")),
    }
}

/// The format and size of an image, decided by its bytes alone (never by a name or a declared
/// type).
pub fn inspect(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let (kind, (width, height)) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (ImageKind::Png, png(bytes)?)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ImageKind::Jpeg, jpeg(bytes)?)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        (ImageKind::Gif, gif(bytes)?)
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        (ImageKind::Webp, webp(bytes)?)
    } else {
        return Err(ImageError::Unsupported("unrecognised format"));
    };
    if width == 0 || height == 0 {
        return Err(ImageError::Unsupported("an image without pixels"));
    }
    Ok(ImageInfo {
        kind,
        width,
        height,
    })
}

/// Where an upload is stored: 32 lowercase hex digits (its id) and the extension of its type.
/// The client's file name never takes part, so no path can be smuggled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaKey(String);

impl MediaKey {
    /// The key of upload `id` of type `kind`.
    pub fn new(id: uuid::Uuid, kind: ImageKind) -> Self {
        Self(format!("{}.{}", id.simple(), kind.extension()))
    }

    /// A key as it appears in a URL; `None` for anything this server could not have made.
    pub fn parse(raw: &str) -> Option<Self> {
        let (stem, ext) = raw.split_once('.')?;
        let valid = stem.len() == 32
            && stem
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && ImageKind::from_extension(ext).is_some();
        valid.then(|| Self(raw.to_owned()))
    }

    /// The type its extension names.
    pub fn kind(&self) -> Option<ImageKind> {
        self.0
            .rsplit_once('.')
            .and_then(|(_, ext)| ImageKind::from_extension(ext))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Stored media bytes by key.
///
/// `put` is durable when it returns (a crash afterwards loses nothing) and atomic (a reader
/// never sees part of an object). Errors: [`InfraError`] only; an unknown key is `Ok(None)`.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing nothing (keys are new).
    async fn put(&self, key: &MediaKey, bytes: Vec<u8>) -> Result<(), InfraError>;
    /// The bytes under `key`.
    async fn get(&self, key: &MediaKey) -> Result<Option<Vec<u8>>, InfraError>;
    /// Removes `key`; `false` if nothing was there.
    async fn delete(&self, key: &MediaKey) -> Result<bool, InfraError>;
    /// Whether the store answers (readiness).
    async fn check(&self) -> Result<(), InfraError>;
}

/// Limits on uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Largest upload in bytes (10 MiB by default).
    pub max_bytes: usize,
    /// Largest width times height (40 megapixels by default).
    pub max_pixels: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Its id (a UUIDv7; also the stem of its key).
    pub id: uuid::Uuid,
    /// Where it is stored.
    pub key: MediaKey,
    /// Its format.
    pub kind: ImageKind,
    /// Size in bytes.
    pub size: usize,
    /// Width and height.
    pub dimensions: (u32, u32),
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Not an accepted image.
    #[error(transparent)]
    Unsupported(#[from] ImageError),
    /// Larger than [`MediaLimits::max_bytes`].
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    /// More pixels than [`MediaLimits::max_pixels`].
    #[error("{width} x {height} pixels is more than {max}")]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The limit.
        max: u64,
    },
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Uploads and serves images.
#[derive(Clone)]
pub struct MediaService {
    store: Arc<dyn MediaStore>,
    ids: Arc<dyn IdGenerator>,
    limits: MediaLimits,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl MediaService {
    /// The service over its store.
    pub fn new(store: Arc<dyn MediaStore>, ids: Arc<dyn IdGenerator>, limits: MediaLimits) -> Self {
        Self { store, ids, limits }
    }

    /// The limits uploads are held to (the HTTP edge stops reading past `max_bytes`).
    pub fn limits(&self) -> MediaLimits {
        self.limits
    }

    /// Checks and stores an upload. Nothing is stored for a refused one.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Media, UploadError> {
        if bytes.len() > self.limits.max_bytes {
            return Err(UploadError::TooLarge(self.limits.max_bytes));
        }
        let info = inspect(&bytes)?;
        if info.pixels() > self.limits.max_pixels {
            return Err(UploadError::TooManyPixels {
                width: info.width,
                height: info.height,
                max: self.limits.max_pixels,
            });
        }
        let id = self.ids.new_id();
        let key = MediaKey::new(id, info.kind);
        let size = bytes.len();
        self.store.put(&key, bytes).await?;
        Ok(Media {
            id,
            key,
            kind: info.kind,
            size,
            dimensions: (info.width, info.height),
        })
    }

    /// The bytes and type under a key; `None` if unknown.
    pub async fn fetch(&self, key: &MediaKey) -> Result<Option<(Vec<u8>, ImageKind)>, InfraError> {
        let Some(kind) = key.kind() else {
            return Ok(None);
        };
        Ok(self.store.get(key).await?.map(|bytes| (bytes, kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../moments-testkit/fixtures");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn the_four_formats_are_recognised_with_their_size() {
        for (name, kind) in [
            ("tiny.png", ImageKind::Png),
            ("tiny.jpg", ImageKind::Jpeg),
            ("tiny.gif", ImageKind::Gif),
            ("tiny.webp", ImageKind::Webp),
            ("tiny-lossless.webp", ImageKind::Webp),
        ] {
            let info = inspect(&fixture(name)).unwrap();
            assert_eq!((info.kind, info.width, info.height), (kind, 3, 2), "{name}");
        }
    }

    #[test]
    fn other_content_and_polyglots_are_refused() {
        for name in ["page.html", "polyglot.png"] {
            assert!(inspect(&fixture(name)).is_err(), "{name}");
        }
        let png = fixture("tiny.png");
        for cut in [8, 20, 40, png.len() - 1] {
            assert!(inspect(&png[..cut]).is_err(), "PNG cut at {cut}");
        }
        let mut jpeg = fixture("tiny.jpg");
        jpeg.extend_from_slice(b"<script>");
        assert!(inspect(&jpeg).is_err());
        let mut webp = fixture("tiny.webp");
        webp.push(0);
        assert!(inspect(&webp).is_err());
        assert!(inspect(b"").is_err());
        assert!(inspect(b"GIF89a").is_err());
    }

    #[test]
    fn a_bomb_is_measured_from_its_header() {
        let info = inspect(&fixture("bomb.png")).unwrap();
        assert_eq!(info.pixels(), 10_000_000_000);
    }

    #[test]
    fn keys_are_only_what_the_server_makes() {
        let id = uuid::Uuid::now_v7();
        let key = MediaKey::new(id, ImageKind::Webp);
        assert_eq!(MediaKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(key.kind(), Some(ImageKind::Webp));
        for bad in [
            "../../etc/passwd",
            "0123456789abcdef0123456789abcdef.html",
            "0123456789ABCDEF0123456789ABCDEF.png",
            "0123456789abcdef0123456789abcde.png",
            "0123456789abcdef0123456789abcdef.png/x",
            "0123456789abcdef0123456789abcdef",
            "",
        ] {
            assert_eq!(MediaKey::parse(bad), None, "{bad}");
        }
    }
}
