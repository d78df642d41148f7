//! The raft log's write-ahead file (`<data_dir>/raft/log.wal`).
//!
//! A redb commit made durable writes every B-tree page it changed (7–9 scattered 4 KiB pages
//! for one small entry) and then fsyncs; that fsync took 0.8 ms where one sequential write and
//! fdatasync took 0.12 ms (same disk). So appends and truncations are made durable here, with
//! one write and one fdatasync per batch, while redb takes them without fsync; a durable redb
//! commit now and then (a checkpoint) records the last sequence number it covers, and the
//! file is written again from its start.
//!
//! A record: `len: u32` (of the body), `crc: u32` (CRC-32 of the log's id, the round and the
//! body), then the body: `seq: u64`, `kind: u8` and the operation. The round is the number of
//! the durable redb commit the records follow (it is stored with that commit); records carry
//! consecutive sequence numbers. Reading stops at the first record that is short, fails its
//! CRC or does not continue the sequence, so what an earlier round left behind past the new
//! records is never read as theirs (its CRC is another round's, even where a torn write
//! left a later record intact), nor is a file another log left (another id). All integers
//! are little-endian.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes before a record's body: its length and CRC.
const HEAD: usize = 8;
/// Bytes of a body before its operation: sequence number and kind.
const BODY_HEAD: usize = 9;
const KIND_APPEND: u8 = 1;
const KIND_TRUNCATE: u8 = 2;

/// One logged change of the raft log; written from borrowed bytes, read back as owned ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op<B = Vec<u8>> {
    /// Encoded entries by log index.
    Append(Vec<(u64, B)>),
    /// Every entry at or after this index is gone.
    TruncateFrom(u64),
}

/// The open file, written from `offset` on with sequence numbers after `last_seq`.
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    id: u64,
    round: u64,
    offset: u64,
    last_seq: u64,
}

impl Wal {
    /// Opens (creating) the file and returns it with the records of `round` that follow
    /// `after_seq` (those the durable redb commit of that round does not cover), in order.
    /// The caller commits them to redb durably with the next round and calls
    /// [`Wal::restart`] with it before writing.
    pub(super) fn open(
        path: &Path,
        id: u64,
        round: u64,
        after_seq: u64,
    ) -> io::Result<(Wal, Vec<(u64, Op)>)> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, 0)?;
        let records = read_records(&bytes, seed(id, round));
        let pending: Vec<(u64, Op)> = records.into_iter().filter(|(seq, _)| *seq > after_seq).collect();
        if let Some((first, _)) = pending.first() {
            if *first != after_seq + 1 {
                return Err(io::Error::other(format!(
                    "{}: its records start at sequence number {first}, but the log covers only up to {after_seq}",
                    path.display()
                )));
            }
        }
        let last_seq = pending.last().map_or(after_seq, |(seq, _)| *seq);
        Ok((Wal { file, id, round, offset: 0, last_seq }, pending))
    }

    /// The round the records written now belong to.
    pub(super) fn round(&self) -> u64 {
        self.round
    }

    /// The sequence number of the last record written.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Bytes written since the last [`Wal::restart`].
    pub(super) fn written(&self) -> u64 {
        self.offset
    }

    /// Writes `ops` as the next records (one write, not synced).
    pub(super) fn write<B: AsRef<[u8]>>(&mut self, ops: &[Op<B>]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut seq = self.last_seq;
        for op in ops {
            seq += 1;
            encode_record(&mut buf, seed(self.id, self.round), seq, op);
        }
        self.file.write_all_at(&buf, self.offset)?;
        self.offset += buf.len() as u64;
        self.last_seq = seq;
        Ok(())
    }

    /// Makes what was written durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// A durable redb commit of `round` covers every record so far: write records of that
    /// round from the start of the file.
    pub(super) fn restart(&mut self, round: u64) {
        self.round = round;
        self.offset = 0;
    }
}

/// What a record's CRC starts from: the log's id and the round.
fn seed(id: u64, round: u64) -> [u8; 16] {
    let mut s = [0; 16];
    s[..8].copy_from_slice(&id.to_le_bytes());
    s[8..].copy_from_slice(&round.to_le_bytes());
    s
}

fn encode_record<B: AsRef<[u8]>>(buf: &mut Vec<u8>, seed: [u8; 16], seq: u64, op: &Op<B>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEAD]);
    buf.extend_from_slice(&seq.to_le_bytes());
    match op {
        Op::Append(entries) => {
            buf.push(KIND_APPEND);
            buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (index, bytes) in entries {
                buf.extend_from_slice(&index.to_le_bytes());
                let bytes = bytes.as_ref();
                buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                buf.extend_from_slice(bytes);
            }
        }
        Op::TruncateFrom(from) => {
            buf.push(KIND_TRUNCATE);
            buf.extend_from_slice(&from.to_le_bytes());
        }
    }
    let body_len = (buf.len() - start - HEAD) as u32;
    let crc = checksum(seed, &buf[start + HEAD..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + HEAD].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(seed: [u8; 16], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seed);
    h.update(body);
    h.finalize()
}

/// The valid records at the start of `bytes`: consecutive sequence numbers, each intact.
fn read_records(bytes: &[u8], seed: [u8; 16]) -> Vec<(u64, Op)> {
    let mut out: Vec<(u64, Op)> = Vec::new();
    let mut at = 0;
    while let Some((seq, op, next)) = read_record(bytes, at, seed) {
        if out.last().is_some_and(|(last, _)| seq != last + 1) {
            break;
        }
        out.push((seq, op));
        at = next;
    }
    out
}

fn read_record(bytes: &[u8], at: usize, seed: [u8; 16]) -> Option<(u64, Op, usize)> {
    let head = bytes.get(at..at.checked_add(HEAD)?)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let body_start = at + HEAD;
    let body = bytes.get(body_start..body_start.checked_add(len)?)?;
    if len < BODY_HEAD || checksum(seed, body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let mut r = Reader(&body[BODY_HEAD..]);
    let op = match body[8] {
        KIND_APPEND => {
            let n = r.u32()?;
            let mut entries = Vec::new();
            for _ in 0..n {
                let index = r.u64()?;
                let size = r.u32()? as usize;
                entries.push((index, r.take(size)?.to_vec()));
            }
            Op::Append(entries)
        }
        KIND_TRUNCATE => Op::TruncateFrom(r.u64()?),
        _ => return None,
    };
    if !r.0.is_empty() {
        return None;
    }
    Some((seq, op, body_start + len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(index: u64, body: &str) -> Op {
        Op::Append(vec![(index, body.as_bytes().to_vec())])
    }

    #[test]
    fn records_written_are_read_back_after_the_covered_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, pending) = Wal::open(&path, 7, 1, 0).unwrap();
        assert!(pending.is_empty());
        wal.write(&[append(1, "a"), append(2, "b")]).unwrap();
        wal.write(&[Op::TruncateFrom(2), append(2, "c")]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, pending) = Wal::open(&path, 7, 1, 1).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert_eq!(pending[1].1, Op::TruncateFrom(2));
        assert_eq!(pending[2].1, append(2, "c"));
        assert_eq!(wal.last_seq(), 4);
    }

    #[test]
    fn a_restarted_file_ends_where_the_new_records_end() {
        // Proves that what an earlier round left past the new records is not read as records.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, _) = Wal::open(&path, 7, 1, 0).unwrap();
        wal.write(&[append(1, "aaaaaaaa"), append(2, "bbbbbbbb"), append(3, "cccccccc")]).unwrap();
        wal.restart(2);
        wal.write(&[append(4, "d")]).unwrap();
        drop(wal);
        let (_, pending) = Wal::open(&path, 7, 2, 3).unwrap();
        assert_eq!(pending, vec![(4, append(4, "d"))]);
        // The covered ones are skipped even though they are intact.
        let (_, pending) = Wal::open(&path, 7, 2, 4).unwrap();
        assert!(pending.is_empty());
        // The earlier round's records are not this round's, even where one would continue
        // the sequence (a torn write can leave a later record intact and an earlier one not).
        let (mut wal, _) = Wal::open(&path, 7, 3, 0).unwrap();
        wal.restart(3);
        wal.write(&[append(1, "zzzzzzzz")]).unwrap(); // as long as round 1's first record
        drop(wal);
        let (_, pending) = Wal::open(&path, 7, 3, 0).unwrap();
        assert_eq!(pending, vec![(1, append(1, "zzzzzzzz"))], "round 1's record 2 is not read");
    }

    #[test]
    fn a_torn_or_foreign_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, _) = Wal::open(&path, 7, 1, 0).unwrap();
        wal.write(&[append(1, "a"), append(2, "b")]).unwrap();
        drop(wal);
        // Another log's file (another id) holds nothing for this one.
        assert!(Wal::open(&path, 8, 1, 0).unwrap().1.is_empty());
        // A torn last record: the first one stays.
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 1).unwrap();
        let (_, pending) = Wal::open(&path, 7, 1, 0).unwrap();
        assert_eq!(pending, vec![(1, append(1, "a"))]);
    }

    #[test]
    fn records_that_skip_past_the_covered_log_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.wal");
        let (mut wal, _) = Wal::open(&path, 7, 1, 5).unwrap();
        wal.write(&[append(1, "a")]).unwrap(); // sequence number 6
        drop(wal);
        let e = Wal::open(&path, 7, 1, 3).unwrap_err();
        assert!(e.to_string().contains("start at sequence number 6"), "{e}");
    }
}
