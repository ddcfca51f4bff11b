//! A Parquet footer checked before the Parquet crate parses it.
//!
//! The footer is Thrift's compact protocol. The parser (parquet 60) skips
//! a field it does not know element by element, and takes a boolean in a
//! list as taking no bytes (it takes one): a 2 KiB file whose footer
//! declares a list of two billion booleans kept it busy for 11 s per open
//! (found by fuzzing). Here the footer is walked once, in time bounded by
//! its length: every element of a list, set or map takes at least one
//! byte, so a collection that declares more elements than bytes are left
//! is refused, as is nesting deeper than [`MAX_DEPTH`].

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The deepest nesting of structs and collections accepted (the Parquet
/// footer's own schema nests a handful of levels).
pub(crate) const MAX_DEPTH: u32 = 64;

/// The largest footer read (the archive's files have footers of a few
/// kilobytes; Parquet allows far more).
pub(crate) const MAX_FOOTER: u64 = 64 << 20;

/// Checks the footer of `file`: `Err` says what is wrong with it. A file
/// too short to have a footer passes, for the Parquet crate to refuse.
pub(crate) fn check(file: &File) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < 12 {
        return Ok(());
    }
    let mut tail = [0u8; 8];
    file.read_exact_at(&mut tail, len - 8)
        .map_err(|e| e.to_string())?;
    if &tail[4..] != b"PAR1" {
        return Ok(());
    }
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if meta_len > MAX_FOOTER || meta_len + 8 > len {
        return Ok(());
    }
    let mut meta = vec![0u8; meta_len as usize];
    file.read_exact_at(&mut meta, len - 8 - meta_len)
        .map_err(|e| e.to_string())?;
    let mut buf = meta.as_slice();
    walk(&mut buf, STRUCT, MAX_DEPTH)
        .ok_or_else(|| "its footer is not valid Thrift (a collection declares more elements than it has bytes, or nests too deep)".to_owned())
}

const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

fn byte(buf: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = buf.split_first()?;
    *buf = rest;
    Some(b)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = byte(buf)?;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn skip(buf: &mut &[u8], n: u64) -> Option<()> {
    let n = usize::try_from(n).ok()?;
    *buf = buf.get(n..)?;
    Some(())
}

/// Walks one value of type `ty` (a field's or an element's); `None` if it
/// is cut short, too deep, or declares more elements than bytes are left.
fn walk(buf: &mut &[u8], ty: u8, depth: u32) -> Option<()> {
    let depth = depth.checked_sub(1)?;
    match ty {
        // A boolean field is in its header; a boolean element takes a
        // byte (`element` below).
        BOOL_TRUE | BOOL_FALSE => Some(()),
        BYTE => skip(buf, 1),
        I16 | I32 | I64 => varint(buf).map(|_| ()),
        DOUBLE => skip(buf, 8),
        UUID => skip(buf, 16),
        BINARY => {
            let n = varint(buf)?;
            skip(buf, n)
        }
        LIST | SET => {
            let header = byte(buf)?;
            let size = match header >> 4 {
                15 => varint(buf)?,
                n => u64::from(n),
            };
            if size > buf.len() as u64 {
                return None;
            }
            (0..size).try_for_each(|_| element(buf, header & 0x0f, depth))
        }
        MAP => {
            let size = varint(buf)?;
            if size == 0 {
                return Some(());
            }
            let kinds = byte(buf)?;
            if size.checked_mul(2)? > buf.len() as u64 {
                return None;
            }
            (0..size).try_for_each(|_| {
                element(buf, kinds >> 4, depth)?;
                element(buf, kinds & 0x0f, depth)
            })
        }
        STRUCT => loop {
            let header = byte(buf)?;
            let field_ty = header & 0x0f;
            if field_ty == 0 {
                return Some(());
            }
            if header >> 4 == 0 {
                // The field id in full (a zigzag i16).
                varint(buf)?;
            }
            walk(buf, field_ty, depth)?;
        },
        _ => None,
    }
}

/// One element of a collection: a boolean takes a byte here.
fn element(buf: &mut &[u8], ty: u8, depth: u32) -> Option<()> {
    match ty {
        BOOL_TRUE | BOOL_FALSE => skip(buf, 1),
        _ => walk(buf, ty, depth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_that_declare_more_than_their_bytes_are_refused() {
        // struct { 1: list<bool> of 3 } then stop.
        let ok = [0x19, 0x31, 1, 0, 1, 0];
        assert_eq!(walk(&mut &ok[..], STRUCT, MAX_DEPTH), Some(()));
        // The same list declaring 2^31 booleans in 4 bytes.
        let bomb = [0x19, 0xf1, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 0, 1, 0];
        assert_eq!(walk(&mut &bomb[..], STRUCT, MAX_DEPTH), None);
        // A map of a billion entries, and nesting past the limit.
        let map = [0x1b, 0x80, 0x80, 0x80, 0x80, 0x04, 0x55, 0];
        assert_eq!(walk(&mut &map[..], STRUCT, MAX_DEPTH), None);
        let deep = [0x1c; 100];
        assert_eq!(walk(&mut &deep[..], STRUCT, MAX_DEPTH), None);
        // Cut short.
        assert_eq!(walk(&mut &[0x18, 0x05][..], STRUCT, MAX_DEPTH), None);
    }
}
