//! The journal's record format: `len: u32`, `crc32(payload): u32`, then the payload: the record's
//! number (`u64`), how many entries (`u32`) and the group's applied writes ([`Entry`]), little-endian,
//! strings and bytes prefixed by their length (`u32`), options by a 0/1 byte.

use super::tables::Op;
use crate::service::StoreError;

/// One applied write of a group, as the journal holds it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Commit(Vec<Op>),
    MarkDelivered(Vec<u64>),
    DeadLetter(Vec<u8>),
}

/// A record read back: its number and the group's writes.
pub(super) type Record = (u64, Vec<Entry>);

/// A borrowed [`Entry`], to append without copying.
pub(super) enum EntryRef<'a> {
    Commit(&'a [Op]),
    MarkDelivered(&'a [u64]),
    DeadLetter(&'a [u8]),
}

/// One whole record: its number and these entries, framed and checksummed.
pub(super) fn encode(seq: u64, entries: &[EntryRef<'_>]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(256);
    put_u64(&mut payload, seq);
    put_u32(&mut payload, entries.len());
    for entry in entries {
        encode_entry(&mut payload, entry);
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    put_u32(&mut record, payload.len());
    record.extend_from_slice(&crc32(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// The journal's records at the start of `bytes` (whole, checksummed, numbered one after the
/// other), and how many bytes they take.
pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<Record>, usize), StoreError> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        // Zeros (the file's unused room) are no record: a payload holds at least its number.
        if len < 12 {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        let seq = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        if records.last().is_some_and(|(last, _)| seq != last + 1) {
            break;
        }
        // A whole record with a good checksum that does not decode was written by other code.
        let record = decode_record(payload).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "embedded store: journal record at byte {at} does not decode"
            ))
        })?;
        records.push(record);
        at += 8 + len as usize;
    }
    Ok((records, at))
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    put_u32(out, value.len());
    out.extend_from_slice(value);
}

fn put_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_u64(out, value);
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_bytes(out, value.as_bytes());
        }
    }
}

fn encode_entry(out: &mut Vec<u8>, entry: &EntryRef<'_>) {
    match entry {
        EntryRef::Commit(ops) => {
            out.push(1);
            put_u32(out, ops.len());
            for op in *ops {
                encode_op(out, op);
            }
        }
        EntryRef::MarkDelivered(seqs) => {
            out.push(2);
            put_u32(out, seqs.len());
            for seq in *seqs {
                put_u64(out, *seq);
            }
        }
        EntryRef::DeadLetter(value) => {
            out.push(3);
            put_bytes(out, value);
        }
    }
}

fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Product {
            sku,
            expected_version,
            value,
        } => {
            out.push(1);
            put_bytes(out, sku.as_bytes());
            put_opt_u64(out, *expected_version);
            put_bytes(out, value);
        }
        Op::NewBatch {
            sku,
            reference,
            value,
        }
        | Op::UpdateBatch {
            sku,
            reference,
            value,
        } => {
            out.push(if matches!(op, Op::NewBatch { .. }) {
                2
            } else {
                3
            });
            put_bytes(out, sku.as_bytes());
            put_bytes(out, reference.as_bytes());
            put_bytes(out, value);
        }
        Op::PutAllocation {
            sku,
            orderid,
            batchref,
            waiting_since,
            qty,
            value,
        } => {
            out.push(4);
            put_bytes(out, sku.as_bytes());
            put_bytes(out, orderid.as_bytes());
            put_opt_str(out, batchref.as_deref());
            put_opt_u64(out, *waiting_since);
            put_u32(out, *qty as usize);
            put_bytes(out, value);
        }
        Op::DeleteAllocation { sku, orderid } => {
            out.push(5);
            put_bytes(out, sku.as_bytes());
            put_bytes(out, orderid.as_bytes());
        }
        Op::Outbox {
            sku,
            version_number,
            slot,
            value,
        } => {
            out.push(6);
            put_bytes(out, sku.as_bytes());
            put_u64(out, *version_number);
            put_bytes(out, slot.as_bytes());
            put_bytes(out, value);
        }
    }
}

/// Reads a payload; `None` if it is not one this code wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        Some(self.take(len)?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u64()?)),
            _ => None,
        }
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }
}

fn decode_record(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(match r.u8()? {
            1 => {
                let n = r.u32()?;
                let mut ops = Vec::new();
                for _ in 0..n {
                    ops.push(decode_op(&mut r)?);
                }
                Entry::Commit(ops)
            }
            2 => {
                let n = r.u32()?;
                let mut seqs = Vec::new();
                for _ in 0..n {
                    seqs.push(r.u64()?);
                }
                Entry::MarkDelivered(seqs)
            }
            3 => Entry::DeadLetter(r.bytes()?),
            _ => return None,
        });
    }
    r.0.is_empty().then_some((seq, entries))
}

fn decode_op(r: &mut Reader<'_>) -> Option<Op> {
    Some(match r.u8()? {
        1 => Op::Product {
            sku: r.string()?,
            expected_version: r.opt_u64()?,
            value: r.bytes()?,
        },
        tag @ (2 | 3) => {
            let (sku, reference, value) = (r.string()?, r.string()?, r.bytes()?);
            if tag == 2 {
                Op::NewBatch {
                    sku,
                    reference,
                    value,
                }
            } else {
                Op::UpdateBatch {
                    sku,
                    reference,
                    value,
                }
            }
        }
        4 => Op::PutAllocation {
            sku: r.string()?,
            orderid: r.string()?,
            batchref: r.opt_string()?,
            waiting_since: r.opt_u64()?,
            qty: r.u32()?,
            value: r.bytes()?,
        },
        5 => Op::DeleteAllocation {
            sku: r.string()?,
            orderid: r.string()?,
        },
        6 => Op::Outbox {
            sku: r.string()?,
            version_number: r.u64()?,
            slot: r.string()?,
            value: r.bytes()?,
        },
        _ => return None,
    })
}

/// CRC-32 (IEEE), table-driven: the table is built at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_ieee_crc32() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
