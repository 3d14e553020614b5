//! The audit log's archive: entries past the retention age leave the database as
//! hash-chained segments in an object store (a local folder or an S3 bucket,
//! `--audit-archive-url`), and `audit verify` checks the archive and the live log as
//! one history.
//!
//! A segment is one object, `audit-segment-<number, 12 digits>.jsonl`, numbered from
//! 1 with no gap, holding at most [`MAX_SEGMENT_ENTRIES`] entries in position order.
//! Its JSON lines are: a header (format, number, the previous segment's hash, the
//! count and the first and last positions), each entry as stored (with its chain,
//! its own hash and the hash it links to), and a trailer with the segment's hash:
//! SHA-256 over the format, the number, the previous segment's hash and each entry's
//! position, chain and hash. Entry hashes cover the entries' content, so the segment
//! hash covers it too, and each segment names the one before it.
//!
//! An entry leaves the database only after its segment is written, read back and
//! found identical, and noted in the database (`audit_segment`); then exactly that
//! segment's entries are removed. A removal cut off is finished by the next export,
//! from the segment read back again.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use carepath_store::{
    AUDIT_CHAIN_START, AUDIT_CHAINS, ArchivedAudit, AuditEntry, AuditHead, AuditOutcome,
    AuditSegmentRecord, AuditVerification, ChainedAuditRecord, Store, audit_entry_hash,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AppError, AppResult};

/// Most entries in one segment.
pub const MAX_SEGMENT_ENTRIES: u32 = 50_000;
/// Most segments one export writes, so one sweep stays bounded; the next goes on.
pub const MAX_SEGMENTS_PER_EXPORT: usize = 100;
/// Most bytes of one segment read back (an entry is well under 2 KiB).
const MAX_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// Segment objects' names start with this.
pub const SEGMENT_PREFIX: &str = "audit-segment-";
/// The format named in each segment's header.
const FORMAT: &str = "carepath.audit.segment.v1";
/// The previous-segment hash of the first segment.
const FIRST_SEGMENT_PREV: &str = "genesis";

/// A segment's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    format: String,
    segment: i64,
    prev_segment_hash: String,
    entries: i64,
    first_seq: i64,
    last_seq: i64,
}

/// One archived entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Line {
    seq: i64,
    chain: i32,
    /// RFC 3339 at microseconds, as hashed.
    at: String,
    subject: String,
    role: String,
    rpc: String,
    record_kind: String,
    record_id: String,
    member_id: Option<String>,
    outcome: String,
    repeats: u32,
    prev_hash: String,
    hash: String,
}

/// A segment's last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Trailer {
    segment_hash: String,
}

impl Line {
    fn of(r: &ChainedAuditRecord) -> Line {
        let e = &r.record.entry;
        Line {
            seq: r.record.seq,
            chain: r.chain,
            at: r.record.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            subject: e.subject.clone(),
            role: e.role.clone(),
            rpc: e.rpc.clone(),
            record_kind: e.record_kind.clone(),
            record_id: e.record_id.clone(),
            member_id: e.member_id.clone(),
            outcome: e.outcome.as_str().to_owned(),
            repeats: e.repeats,
            prev_hash: r.prev_hash.clone(),
            hash: r.record.hash.clone(),
        }
    }

    /// The hash this entry's content gives when linked to `prev`; None when its time
    /// or outcome cannot be read.
    fn recomputed(&self, prev: &str) -> Option<String> {
        let at = DateTime::parse_from_rfc3339(&self.at)
            .ok()?
            .with_timezone(&Utc);
        let outcome = match self.outcome.as_str() {
            "allowed" => AuditOutcome::Allowed,
            "denied" => AuditOutcome::Denied,
            _ => return None,
        };
        let entry = AuditEntry {
            subject: self.subject.clone(),
            role: self.role.clone(),
            rpc: self.rpc.clone(),
            record_kind: self.record_kind.clone(),
            record_id: self.record_id.clone(),
            member_id: self.member_id.clone(),
            outcome,
            repeats: self.repeats,
        };
        Some(audit_entry_hash(prev, at, &entry))
    }
}

/// The object name of segment `number`.
pub fn segment_name(number: i64) -> String {
    format!("{SEGMENT_PREFIX}{number:012}.jsonl")
}

/// The number in a segment object's name.
fn segment_number(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(".jsonl")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn segment_hash(number: i64, prev: &str, lines: &[Line]) -> String {
    let mut h = Sha256::new();
    for part in [FORMAT, &number.to_string(), prev] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    for line in lines {
        h.update(format!("{}:{}:{}", line.seq, line.chain, line.hash).as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

/// A segment read from its object.
struct Segment {
    header: Header,
    lines: Vec<Line>,
    hash: String,
}

fn encode(number: i64, prev: &str, lines: &[Line]) -> AppResult<(Bytes, String)> {
    let header = Header {
        format: FORMAT.to_owned(),
        segment: number,
        prev_segment_hash: prev.to_owned(),
        entries: lines.len() as i64,
        first_seq: lines.first().map_or(0, |l| l.seq),
        last_seq: lines.last().map_or(0, |l| l.seq),
    };
    let hash = segment_hash(number, prev, lines);
    let json = |e: serde_json::Error| AppError::Internal(format!("audit segment {number}: {e}"));
    let mut out = serde_json::to_vec(&header).map_err(json)?;
    out.push(b'\n');
    for line in lines {
        out.extend(serde_json::to_vec(line).map_err(json)?);
        out.push(b'\n');
    }
    out.extend(
        serde_json::to_vec(&Trailer {
            segment_hash: hash.clone(),
        })
        .map_err(json)?,
    );
    out.push(b'\n');
    Ok((Bytes::from(out), hash))
}

/// Reads a segment's lines; an error says what is wrong with it.
fn decode(bytes: &[u8]) -> Result<Segment, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.len() < 2 {
        return Err("has no header and trailer".into());
    }
    let trailer = lines.pop().unwrap_or_default();
    let header: Header =
        serde_json::from_str(lines[0]).map_err(|e| format!("header unreadable: {e}"))?;
    let trailer: Trailer =
        serde_json::from_str(trailer).map_err(|e| format!("trailer unreadable: {e}"))?;
    let entries = lines[1..]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("line {} unreadable: {e}", i + 2))
        })
        .collect::<Result<Vec<Line>, String>>()?;
    Ok(Segment {
        header,
        lines: entries,
        hash: trailer.segment_hash,
    })
}

/// What one export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub segments: u64,
    pub entries: u64,
}

/// What checking the archive and the live log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveVerdict {
    /// Every segment and every live entry checks, and they link as one history.
    Intact {
        segments: i64,
        archived: i64,
        live: i64,
    },
    /// `place` names the segment object or the entry where the history breaks.
    Broken { place: String, reason: String },
}

/// The archive of the audit log at one object store location.
#[derive(Debug, Clone)]
pub struct AuditArchive {
    objects: Arc<dyn ObjectStore>,
}

fn storage(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("audit archive: {e}"))
}

impl AuditArchive {
    /// The archive at `url`: `file:///PATH` or `s3://BUCKET/PREFIX` (the
    /// `--audit-archive-url` setting, read like `--records-url`).
    pub fn open(url: &str) -> Result<AuditArchive, String> {
        Ok(AuditArchive::new(
            crate::secondopinion::records::objects_at(url)?,
        ))
    }

    /// The archive in any object store.
    pub fn new(objects: Arc<dyn ObjectStore>) -> AuditArchive {
        AuditArchive { objects }
    }

    async fn read(&self, name: &str) -> AppResult<Option<Bytes>> {
        let path = Path::from(name);
        let got = match self.objects.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        if got.meta.size > MAX_SEGMENT_BYTES {
            return Err(storage(format!(
                "{name} is {} bytes, more than a segment's {MAX_SEGMENT_BYTES}",
                got.meta.size
            )));
        }
        Ok(Some(got.bytes().await.map_err(storage)?))
    }

    /// Moves the entries that may be archived at a cut-off of `before` out of the
    /// database, in segments of at most `segment_entries` entries (at most
    /// [`MAX_SEGMENT_ENTRIES`]), and at most [`MAX_SEGMENTS_PER_EXPORT`] segments.
    pub async fn export(
        &self,
        store: &Store,
        before: DateTime<Utc>,
        segment_entries: u32,
        now: DateTime<Utc>,
    ) -> AppResult<Exported> {
        let segment_entries = segment_entries.clamp(1, MAX_SEGMENT_ENTRIES);
        let mut exported = Exported::default();
        let mut last = store.last_audit_segment().await?;
        // The newest segment's removal may have been cut off: finish it, from the
        // segment as the archive holds it.
        if let Some(segment) = &last {
            let bytes = self.read(&segment.object).await?.ok_or_else(|| {
                storage(format!(
                    "{} noted in the database is missing",
                    segment.object
                ))
            })?;
            let read = decode(&bytes).map_err(|e| storage(format!("{}: {e}", segment.object)))?;
            if read.hash != segment.hash {
                return Err(storage(format!(
                    "{} differs from its hash noted in the database",
                    segment.object
                )));
            }
            let seqs: Vec<i64> = read.lines.iter().map(|l| l.seq).collect();
            store.remove_archived_audit(&seqs, before).await?;
        }
        for _ in 0..MAX_SEGMENTS_PER_EXPORT {
            let rows = store
                .audit_entries_for_archive(before, segment_entries)
                .await?;
            if rows.is_empty() {
                break;
            }
            let number = last.as_ref().map_or(1, |s| s.number + 1);
            let prev = last
                .as_ref()
                .map_or(FIRST_SEGMENT_PREV.to_owned(), |s| s.hash.clone());
            let lines: Vec<Line> = rows.iter().map(Line::of).collect();
            let (bytes, hash) = encode(number, &prev, &lines)?;
            let name = segment_name(number);
            self.objects
                .put(&Path::from(name.as_str()), bytes.clone().into())
                .await
                .map_err(storage)?;
            let back = self.read(&name).await?;
            let same = back.as_ref().is_some_and(|b| *b == bytes)
                && back
                    .as_deref()
                    .and_then(|b| decode(b).ok())
                    .is_some_and(|s| s.hash == hash && s.lines == lines);
            if !same {
                return Err(storage(format!("{name} did not read back as written")));
            }
            let record = AuditSegmentRecord {
                number,
                first_seq: lines.first().map_or(0, |l| l.seq),
                last_seq: lines.last().map_or(0, |l| l.seq),
                entries: lines.len() as i64,
                hash,
                object: name,
                written_at: now,
            };
            store.record_audit_segment(&record).await?;
            let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
            store.remove_archived_audit(&seqs, before).await?;
            tracing::info!(
                segment = %record.object,
                entries = record.entries,
                "audit entries archived"
            );
            exported.segments += 1;
            exported.entries += lines.len() as u64;
            let full = rows.len() as u32 == segment_entries;
            last = Some(record);
            if !full {
                break;
            }
        }
        Ok(exported)
    }

    /// Checks every segment (each entry's hash recomputed, the links within each
    /// chain, each segment's hash and its link to the one before), then the live log in
    /// `store` continuing each chain from its newest archived entry, and every
    /// anchored entry in `anchors` against whichever holds it.
    pub async fn verify(&self, store: &Store, anchors: &[AuditHead]) -> AppResult<ArchiveVerdict> {
        let broken = |place: String, reason: String| Ok(ArchiveVerdict::Broken { place, reason });
        let mut numbers = Vec::new();
        let mut listed = self.objects.list(None);
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(storage)?;
            if let Some(n) = meta.location.filename().and_then(segment_number) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        for (expected, found) in (1..).zip(&numbers) {
            if *found != expected {
                return broken(
                    format!("segment {}", segment_name(expected)),
                    "is missing from the archive".into(),
                );
            }
        }
        let count = numbers.len() as i64;
        if let Some(noted) = store.last_audit_segment().await?
            && noted.number > count
        {
            return broken(
                format!("segment {}", segment_name(count + 1)),
                format!(
                    "is missing from the archive (the database notes {} segments)",
                    noted.number
                ),
            );
        }
        let mut anchored: HashMap<i64, &AuditHead> = anchors.iter().map(|a| (a.seq, a)).collect();
        let mut heads: HashMap<i32, AuditHead> = HashMap::new();
        let mut prev_segment = FIRST_SEGMENT_PREV.to_owned();
        let mut archived = 0_i64;
        let mut newest = HashMap::new();
        for number in 1..=count {
            let name = segment_name(number);
            let place = format!("segment {name}");
            let Some(bytes) = self.read(&name).await? else {
                return broken(place, "is missing from the archive".into());
            };
            let segment = match decode(&bytes) {
                Ok(s) => s,
                Err(reason) => return broken(place, reason),
            };
            let h = &segment.header;
            if h.format != FORMAT || h.segment != number {
                return broken(place, "header names another format or number".into());
            }
            if h.prev_segment_hash != prev_segment {
                return broken(place, "does not link to the segment before it".into());
            }
            if h.entries != segment.lines.len() as i64
                || h.first_seq != segment.lines.first().map_or(0, |l| l.seq)
                || h.last_seq != segment.lines.last().map_or(0, |l| l.seq)
            {
                return broken(place, "header does not match its entries".into());
            }
            if segment_hash(number, &h.prev_segment_hash, &segment.lines) != segment.hash {
                return broken(place, "content does not match its hash".into());
            }
            let mut previous_seq = i64::MIN;
            for line in &segment.lines {
                let at = format!("{place}, entry {}", line.seq);
                if line.seq <= previous_seq {
                    return broken(at, "is out of order".into());
                }
                previous_seq = line.seq;
                if !(1..=AUDIT_CHAINS).contains(&line.chain) {
                    return broken(
                        at,
                        format!("names chain {}, which does not exist", line.chain),
                    );
                }
                let prev = heads
                    .get(&line.chain)
                    .map_or(AUDIT_CHAIN_START, |h| h.hash.as_str());
                if line.prev_hash != prev {
                    return broken(at, "does not link to the entry before it".into());
                }
                if line.recomputed(prev).as_deref() != Some(line.hash.as_str()) {
                    return broken(at, "content does not match its hash".into());
                }
                if let Some(anchor) = anchored.remove(&line.seq)
                    && (anchor.chain != line.chain || anchor.hash != line.hash)
                {
                    return broken(
                        at,
                        "differs from its copy anchored outside the database".into(),
                    );
                }
                heads.insert(
                    line.chain,
                    AuditHead {
                        chain: line.chain,
                        seq: line.seq,
                        hash: line.hash.clone(),
                    },
                );
            }
            archived += segment.lines.len() as i64;
            prev_segment = segment.hash;
            if number == count {
                newest = segment
                    .lines
                    .iter()
                    .map(|l| (l.seq, l.hash.clone()))
                    .collect();
            }
        }
        let mut heads: Vec<AuditHead> = heads.into_values().collect();
        heads.sort_by_key(|h| h.chain);
        let remaining: Vec<AuditHead> = anchored.into_values().cloned().collect();
        let live = store
            .verify_audit_after_archive(
                &remaining,
                &ArchivedAudit {
                    heads,
                    newest_segment: newest,
                },
            )
            .await?;
        Ok(match live {
            AuditVerification::Intact { entries } => ArchiveVerdict::Intact {
                segments: count,
                archived,
                live: entries,
            },
            AuditVerification::Broken { seq, reason } => ArchiveVerdict::Broken {
                place: format!("entry {seq}"),
                reason,
            },
        })
    }
}
