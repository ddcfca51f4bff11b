//! The record of the message ids of deleted log segments,
//! `DIR/released.ids`: magic, the CRC32 of the ids, then the ids (16 bytes
//! each, little-endian), oldest first. See [`super::release_before`].

use std::path::Path;

use crate::error::{Error, Result, io};

/// The record of released messages' ids, in the log's directory.
pub(super) const RELEASED: &str = "released.ids";
/// Its first bytes.
const RELEASED_MAGIC: &[u8; 8] = b"HWIDS\x01\0\0";

/// The ids in `dir`'s record, oldest first; none if there is none. A
/// damaged record is an error.
pub(super) fn ids(dir: &Path) -> Result<Vec<u128>> {
    let path = dir.join(RELEASED);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let damaged = |what: &str| Error::Wal {
        path: path.clone(),
        message: format!("the record of released message ids {what}"),
    };
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(damaged("is too short"));
    };
    if magic != RELEASED_MAGIC {
        return Err(damaged("does not begin as one"));
    }
    let Some((crc, ids)) = rest.split_first_chunk::<4>() else {
        return Err(damaged("is too short"));
    };
    if crc32fast::hash(ids) != u32::from_le_bytes(*crc) || ids.len() % 16 != 0 {
        return Err(damaged("fails its checksum"));
    }
    Ok(ids
        .chunks_exact(16)
        .filter_map(|c| c.try_into().ok().map(u128::from_le_bytes))
        .collect())
}

/// Replaces `dir`'s record by `ids` (see [`crate::txn::replace_durably`]).
pub(super) fn write(dir: &Path, ids: &[u128]) -> Result<()> {
    let mut body = Vec::with_capacity(ids.len() * 16);
    for id in ids {
        body.extend_from_slice(&id.to_le_bytes());
    }
    let mut bytes = Vec::with_capacity(12 + body.len());
    bytes.extend_from_slice(RELEASED_MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    crate::txn::replace_durably(&dir.join(RELEASED), &bytes)
}
