//! The commit-metadata codec: completed offsets above the watermark, and diverted keys.
//!
//! Kafka stores a free-form string next to each committed offset (bounded by the broker's
//! `offset.metadata.max.bytes`, 4096 by default). We use it so that work finished *above* the
//! committed watermark survives a crash or a rebalance: the next owner decodes it and skips those
//! records instead of replaying them. It also carries the keys currently diverted to the overflow
//! topic, so the next owner keeps their order across the two topics (see [`crate::HotKeyPolicy`]).
//!
//! Format, version 1 (ASCII, so it is always a valid metadata string):
//!
//! ```text
//! kq1;<base>;<diverted>;<completed>
//! ```
//!
//! * `base` — the committed offset (the watermark) in decimal. Metadata whose base differs from
//!   the committed offset it came with is stale or foreign and is ignored.
//! * `diverted` — base64url of `(fnv64(key) as 8 bytes LE, varint overflow offset)*`.
//! * `completed` — empty, or `r` + base64url of varint `(gap, len)` runs, or `b` + base64url of a
//!   bitset; bit/offset 0 is `base + 1` (the base itself is by definition incomplete). The encoder
//!   picks whichever is smaller.
//!
//! When the completed set does not fit the budget, the encoder keeps the longest prefix that does
//! and the records beyond it are replayed after a restart: a bounded range of duplicates, never a
//! stall. Diverted keys are written first because they guard ordering, not just duplicates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::Offset;

const MAGIC: &str = "kq1";

/// Why a metadata string was not used. Never fatal: the caller logs it and replays instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// Not written by this library (another client, or a newer version of it).
    Foreign,
    /// Written for another committed offset: someone committed without metadata since.
    StaleBase {
        /// The committed offset the metadata was written for.
        metadata: Offset,
        /// The offset actually committed.
        committed: Offset,
    },
    /// Looks like ours but does not parse.
    Corrupt(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Foreign => write!(f, "commit metadata was not written by kafkaesque"),
            CodecError::StaleBase {
                metadata,
                committed,
            } => write!(
                f,
                "commit metadata is for offset {metadata} but the committed offset is {committed}"
            ),
            CodecError::Corrupt(why) => write!(f, "commit metadata is corrupt: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// What a metadata string said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Completed offsets above the base, as sorted, disjoint `[start, end)` ranges.
    pub completed: Vec<(Offset, Offset)>,
    /// Diverted keys: `(fnv64(key), offset in the overflow partition of the key's last diverted item)`.
    pub diverted: Vec<(u64, Offset)>,
}

/// Stable 64-bit FNV-1a: key hashes in metadata must mean the same thing in every process and
/// every version, which a seeded or unspecified hasher does not promise.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// How many diverted keys always fit in `budget` bytes of metadata, whatever the offsets.
pub fn diverted_capacity(budget: usize) -> usize {
    // Header: magic, a base of up to 20 characters, three separators, a variant tag.
    const HEADER: usize = 3 + 20 + 3 + 1;
    // Per key: 8 bytes of hash and a varint of up to 9 bytes, in base64 (4 characters per 3).
    budget.saturating_sub(HEADER) * 3 / 4 / 17
}

/// Encodes `completed` (sorted ascending, all `> base`) and `diverted` within `budget` bytes.
///
/// Returns the string and the first offset *not* covered (everything completed from there on
/// was left out for lack of room and will be replayed), or `None` when all of it fitted.
pub fn encode(
    base: Offset,
    completed: &[(Offset, Offset)],
    diverted: &[(u64, Offset)],
    budget: usize,
) -> (String, Option<Offset>) {
    // Only offsets above the base mean anything; the base itself is incomplete by definition.
    let clipped: Vec<(Offset, Offset)> = completed
        .iter()
        .filter(|r| r.1 > base + 1)
        .map(|r| (r.0.max(base + 1), r.1))
        .collect();
    let completed = &clipped[..];
    let mut out = format!("{MAGIC};{base};");
    if out.len() + 1 > budget {
        // Not even the header fits: commit without metadata (pure watermark semantics).
        let first = completed.first().map(|r| r.0);
        return (String::new(), first);
    }
    let mut dbytes = Vec::with_capacity(diverted.len() * 12);
    for (h, mark) in diverted {
        let before = dbytes.len();
        dbytes.extend_from_slice(&h.to_le_bytes());
        put_varint(&mut dbytes, *mark as u64);
        if out.len() + b64_len(dbytes.len()) + 1 > budget {
            dbytes.truncate(before);
            break;
        }
    }
    out.push_str(&URL_SAFE_NO_PAD.encode(&dbytes));
    out.push(';');
    let room = budget.saturating_sub(out.len() + 1); // one byte for the variant tag
    let first_rel = base + 1;
    let (runs, runs_end) = encode_runs(first_rel, completed, room);
    let (bits, bits_end) = encode_bits(first_rel, completed, room);
    // Prefer the variant that covers more; on a tie, the smaller one.
    let runs_better = match (runs_end, bits_end) {
        (a, b) if a != b => a > b,
        _ => runs.len() <= bits.len(),
    };
    let (tag, body, covered_end) = if runs_better {
        ('r', runs, runs_end)
    } else {
        ('b', bits, bits_end)
    };
    if !body.is_empty() {
        out.push(tag);
        out.push_str(&URL_SAFE_NO_PAD.encode(&body));
    }
    let total_end = completed.last().map(|r| r.1).unwrap_or(first_rel);
    let left_out = if covered_end >= total_end {
        None
    } else {
        completed
            .iter()
            .find(|r| r.1 > covered_end)
            .map(|r| r.0.max(covered_end))
    };
    (out, left_out)
}

/// Decodes metadata committed together with `committed`.
pub fn decode(metadata: &str, committed: Offset) -> Result<Decoded, CodecError> {
    let (base, dpart, cpart) = decode_sections(metadata, committed)?;
    let diverted = decode_diverted(dpart)?;
    let first = base + 1;
    let completed = match cpart.chars().next() {
        None => Vec::new(),
        Some(tag) => {
            let body = URL_SAFE_NO_PAD
                .decode(&cpart[1..])
                .map_err(|_| CodecError::Corrupt("completed offsets are not base64url"))?;
            match tag {
                'r' => decode_runs(first, &body)?,
                'b' => decode_bits(first, &body),
                _ => return Err(CodecError::Corrupt("unknown completed-set variant")),
            }
        }
    };
    Ok(Decoded {
        completed,
        diverted,
    })
}

/// The base offset, checked against the committed one, and the two sections after it (diverted
/// keys, completed offsets).
fn decode_sections(metadata: &str, committed: Offset) -> Result<(Offset, &str, &str), CodecError> {
    let mut parts = metadata.split(';');
    if parts.next() != Some(MAGIC) {
        return Err(CodecError::Foreign);
    }
    let base: Offset = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(CodecError::Corrupt("base offset"))?;
    if base != committed {
        return Err(CodecError::StaleBase {
            metadata: base,
            committed,
        });
    }
    let dpart = parts
        .next()
        .ok_or(CodecError::Corrupt("missing sections"))?;
    let cpart = parts
        .next()
        .ok_or(CodecError::Corrupt("missing sections"))?;
    if parts.next().is_some() {
        return Err(CodecError::Corrupt("trailing sections"));
    }
    Ok((base, dpart, cpart))
}

/// The diverted keys: their hashes and overflow marks.
fn decode_diverted(dpart: &str) -> Result<Vec<(u64, Offset)>, CodecError> {
    let dbytes = URL_SAFE_NO_PAD
        .decode(dpart)
        .map_err(|_| CodecError::Corrupt("diverted keys are not base64url"))?;
    let mut diverted = Vec::new();
    let mut at = 0;
    while at < dbytes.len() {
        let h = dbytes
            .get(at..at + 8)
            .ok_or(CodecError::Corrupt("truncated key hash"))?;
        at += 8;
        let h = u64::from_le_bytes(h.try_into().expect("8 bytes"));
        let mark = get_varint(&dbytes, &mut at).ok_or(CodecError::Corrupt("divert mark"))?;
        diverted.push((h, to_offset(mark)?));
    }
    Ok(diverted)
}

/// The inverse of [`encode_runs`]: (gap, length) varint pairs from `first`.
fn decode_runs(first: Offset, body: &[u8]) -> Result<Vec<(Offset, Offset)>, CodecError> {
    let mut completed = Vec::new();
    let mut at = 0;
    let mut pos = first;
    while at < body.len() {
        let gap = get_varint(body, &mut at).ok_or(CodecError::Corrupt("run gap"))?;
        let len = get_varint(body, &mut at).ok_or(CodecError::Corrupt("run len"))?;
        if len == 0 {
            return Err(CodecError::Corrupt("empty run"));
        }
        let start = pos
            .checked_add(to_offset(gap)?)
            .ok_or(CodecError::Corrupt("run overflows"))?;
        let end = start
            .checked_add(to_offset(len)?)
            .ok_or(CodecError::Corrupt("run overflows"))?;
        completed.push((start, end));
        pos = end;
    }
    Ok(completed)
}

/// The inverse of [`encode_bits`]: one bit per offset from `first`, set where completed.
fn decode_bits(first: Offset, body: &[u8]) -> Vec<(Offset, Offset)> {
    let mut completed = Vec::new();
    let mut run: Option<Offset> = None;
    for (i, byte) in body.iter().enumerate() {
        for bit in 0..8 {
            let o = first + (i as Offset) * 8 + bit;
            let set = byte & (1 << bit) != 0;
            match (set, run) {
                (true, None) => run = Some(o),
                (false, Some(s)) => {
                    completed.push((s, o));
                    run = None;
                }
                _ => {}
            }
        }
    }
    if let Some(s) = run {
        completed.push((s, first + body.len() as Offset * 8));
    }
    completed
}

fn to_offset(v: u64) -> Result<Offset, CodecError> {
    Offset::try_from(v).map_err(|_| CodecError::Corrupt("offset out of range"))
}

fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Largest raw byte count whose base64url form fits in `room` characters.
fn raw_room(room: usize) -> usize {
    room * 3 / 4
}

fn encode_runs(first: Offset, completed: &[(Offset, Offset)], room: usize) -> (Vec<u8>, Offset) {
    let cap = raw_room(room);
    let mut out = Vec::new();
    let mut pos = first;
    let mut covered = first;
    for &(s, e) in completed {
        let before = out.len();
        put_varint(&mut out, (s - pos) as u64);
        put_varint(&mut out, (e - s) as u64);
        if out.len() > cap {
            out.truncate(before);
            break;
        }
        pos = e;
        covered = e;
    }
    (out, covered)
}

fn encode_bits(first: Offset, completed: &[(Offset, Offset)], room: usize) -> (Vec<u8>, Offset) {
    let Some(&(_, last_end)) = completed.last() else {
        return (Vec::new(), first);
    };
    let want = ((last_end - first) as usize).div_ceil(8);
    let len = want.min(raw_room(room));
    let limit = first + len as Offset * 8;
    let mut out = vec![0u8; len];
    for &(s, e) in completed {
        if s >= limit {
            break;
        }
        for o in s..e.min(limit) {
            let rel = (o - first) as usize;
            out[rel / 8] |= 1 << (rel % 8);
        }
    }
    // Everything below `limit` is described (set or not); coverage ends at the last set bit run.
    let covered = completed
        .iter()
        .take_while(|r| r.0 < limit)
        .last()
        .map(|r| r.1.min(limit))
        .unwrap_or(first);
    (out, covered)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_runs_and_diverts() {
        let completed = vec![(12, 15), (20, 21), (1000, 1003)];
        let diverted = vec![(key_hash(b"hot"), 77)];
        let (s, left) = encode(10, &completed, &diverted, 4096);
        assert_eq!(left, None);
        let d = decode(&s, 10).unwrap();
        assert_eq!(d.completed, completed);
        assert_eq!(d.diverted, diverted);
    }

    #[test]
    fn dense_sets_pick_the_bitset() {
        let completed: Vec<_> = (0..500).map(|i| (101 + 2 * i, 102 + 2 * i)).collect();
        let (s, left) = encode(100, &completed, &[], 4096);
        assert_eq!(left, None);
        assert!(s.contains(";b"), "{s}");
        assert_eq!(decode(&s, 100).unwrap().completed, completed);
    }

    #[test]
    fn over_budget_keeps_a_prefix_and_reports_the_rest() {
        let completed: Vec<_> = (0..5000).map(|i| (10 + 3 * i, 11 + 3 * i)).collect();
        let (s, left) = encode(0, &completed, &[], 256);
        assert!(s.len() <= 256, "{}", s.len());
        let left = left.expect("does not fit");
        let d = decode(&s, 0).unwrap();
        assert!(d.completed.iter().all(|r| r.1 <= left));
        assert!(!d.completed.is_empty());
    }

    #[test]
    fn foreign_stale_and_corrupt_are_errors_not_panics() {
        assert_eq!(decode("", 5), Err(CodecError::Foreign));
        assert_eq!(decode("hello", 5), Err(CodecError::Foreign));
        assert!(matches!(
            decode("kq1;4;;", 5),
            Err(CodecError::StaleBase { .. })
        ));
        assert!(matches!(
            decode("kq1;5;;r!!", 5),
            Err(CodecError::Corrupt(_))
        ));
        assert!(matches!(
            decode("kq1;5;AAAA;", 5),
            Err(CodecError::Corrupt(_))
        ));
        assert!(matches!(decode("kq1;x", 5), Err(CodecError::Corrupt(_))));
    }

    #[test]
    fn tiny_budget_degrades_to_no_metadata() {
        let (s, left) = encode(123_456, &[(123_460, 123_461)], &[], 4);
        assert_eq!(s, "");
        assert_eq!(left, Some(123_460));
    }
}
