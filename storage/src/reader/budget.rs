//! A file as the Parquet decoder reads it, with a budget of bytes.
//!
//! Decoding a well-formed file reads each of its bytes a few times at
//! most (the footer, then each column chunk a row group needs). A hostile
//! one can make the decoder read on and on: fuzzing found a 2 KiB file
//! whose page headers kept the reader going for 351 s (reading its
//! bytes over and over through file handles that share one offset). Every
//! read here is positioned (`pread`, its own offset per reader) and paid
//! for from a budget of [`TIMES`] the file's length plus [`EXTRA`]; each
//! read costs at least [`MIN_COST`], so a loop of empty reads runs out
//! too. Past the budget the read fails, and the decoder with it, with an
//! error the caller reports naming the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

/// The budget in multiples of the file's length.
pub(crate) const TIMES: u64 = 16;
/// And this much more, whatever the file's length.
pub(crate) const EXTRA: u64 = 16 << 20;
/// The least a read costs.
pub(crate) const MIN_COST: u64 = 64;

/// Why a read failed: the budget ran out.
const EXHAUSTED: &str = "the Parquet decoder read this file over and over (past 16 times its length): it is damaged or hostile";

/// A file to decode, with what is left of its budget.
pub(crate) struct Budgeted {
    file: Arc<File>,
    len: u64,
    left: Arc<AtomicU64>,
}

impl Budgeted {
    /// `file` with a fresh budget.
    pub(crate) fn new(file: File) -> std::io::Result<Budgeted> {
        let len = file.metadata()?.len();
        Ok(Budgeted {
            file: Arc::new(file),
            len,
            left: Arc::new(AtomicU64::new(
                len.saturating_mul(TIMES).saturating_add(EXTRA),
            )),
        })
    }
}

/// Takes `cost` from `left`; false (nothing taken) if there is not that
/// much left.
fn pay(left: &AtomicU64, cost: u64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
        l.checked_sub(cost)
    })
    .is_ok()
}

/// A reader from an offset, paying for every read.
pub(crate) struct BudgetedRead {
    file: Arc<File>,
    at: u64,
    left: Arc<AtomicU64>,
}

impl Read for BudgetedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        if !pay(&self.left, (n as u64).max(MIN_COST)) {
            return Err(std::io::Error::other(EXHAUSTED));
        }
        self.at += n as u64;
        Ok(n)
    }
}

impl Length for Budgeted {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Budgeted {
    type T = BufReader<BudgetedRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(BufReader::new(BudgetedRead {
            file: self.file.clone(),
            at: start,
            left: self.left.clone(),
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let past_end = start
            .checked_add(length as u64)
            .is_none_or(|end| end > self.len);
        if past_end {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at {start} are past the end of the file ({} bytes)",
                self.len
            )));
        }
        if !pay(&self.left, (length as u64).max(MIN_COST)) {
            return Err(ParquetError::General(EXHAUSTED.into()));
        }
        let mut buf = vec![0; length];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    #[test]
    fn reads_are_positioned_and_paid_for_until_the_budget_runs_out() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let b = Budgeted::new(f).unwrap();
        assert_eq!(b.len(), 1000);
        // Two readers at different offsets do not move each other.
        let (mut r1, mut r2) = (b.get_read(0).unwrap(), b.get_read(990).unwrap());
        let mut buf = [0u8; 20];
        assert_eq!(r2.read(&mut buf).unwrap(), 10);
        assert_eq!(r1.read(&mut buf).unwrap(), 20);
        assert!(b.get_bytes(995, 10).is_err(), "past the end");
        // Read the file again and again: the budget (16 x 1000 + 16 MiB)
        // runs out, with the error that says why.
        let mut total = 0u64;
        let err = loop {
            match b.get_bytes(0, 1000) {
                Ok(bytes) => total += bytes.len() as u64,
                Err(e) => break e,
            }
            assert!(total <= 1000 * TIMES + EXTRA, "never past the budget");
        };
        assert!(err.to_string().contains("over and over"), "{err}");
        assert!(total >= 1000 * TIMES + EXTRA - 2_000);
    }
}
