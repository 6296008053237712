//! Keyset pages and their sealed cursors, shared by every list of the domain.
//!
//! A cursor seals `list \0 binding \0 key`: the list it belongs to, the query it was issued for
//! (a filter, an author) and the key of the last item shown. Opening checks all three, so a
//! cursor cannot be altered, made up, or replayed against another list or query.

use crate::error::InfraError;
use crate::ports::CursorCodec;

/// A page of a list, with the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, sealed; `None` when this is the last page.
    pub next_cursor: Option<String>,
}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor was not issued by this service for this list and query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// The last key of a sealed cursor of the list `list` bound to `binding` (the query it was
/// issued for): `None` without a cursor, [`ListError::InvalidCursor`] for one that is
/// tampered, made up, or from another list or query.
pub(crate) fn open_cursor(
    codec: &dyn CursorCodec,
    list: &str,
    binding: &str,
    cursor: Option<&str>,
) -> Result<Option<String>, ListError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let payload = codec.open(cursor).ok_or(ListError::InvalidCursor)?;
    let payload = String::from_utf8(payload).map_err(|_| ListError::InvalidCursor)?;
    let mut parts = payload.splitn(3, '\0');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(bound), Some(last)) if name == list && bound == binding => {
            Ok(Some(last.to_owned()))
        }
        _ => Err(ListError::InvalidCursor),
    }
}

/// A page from `items` fetched with one more than `limit`: the extra one, if there, means
/// there is a next page, whose cursor seals the key of the page's last item.
pub(crate) fn seal_page<T>(
    codec: &dyn CursorCodec,
    list: &str,
    binding: &str,
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|last| codec.seal(format!("{list}\0{binding}\0{}", key(last)).as_bytes()))
    } else {
        None
    };
    Page { items, next_cursor }
}
