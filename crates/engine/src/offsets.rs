//! The commit buffer of one partition.
//!
//! Workers finish out of order. Committing offset 3 while offset 0 still runs would lose offset 0
//! on a crash, so a partition may only commit up to its *watermark*: the lowest offset fetched
//! but not complete (or one past the highest fetched when everything is complete). Offsets that
//! were never fetched — compacted away, transaction markers — are simply never tracked, so they
//! cannot block it. Completed offsets above the watermark are kept so the codec can write them
//! into the commit metadata.

use std::collections::VecDeque;

use crate::Offset;

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: Offset,
    /// Items of this record not yet complete (a record may fan out to several keys).
    remaining: u32,
}

/// Offsets of one partition from the committed position onwards.
#[derive(Debug)]
pub(crate) struct OffsetTracker {
    /// Fetched records at or above the watermark, offsets strictly increasing.
    entries: VecDeque<Entry>,
    /// One past the highest offset fetched (or the start position before any fetch).
    next: Offset,
    /// Entries with `remaining == 0` (they wait for the watermark to pass them).
    done_above: usize,
    /// Offsets a previous owner completed above its watermark (from commit metadata), sorted
    /// disjoint `[start, end)` ranges; consumed from the front as fetching passes them.
    precomplete: VecDeque<(Offset, Offset)>,
}

/// What the tracker made of a fetched offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// Tracked; its items must complete.
    Tracked,
    /// A previous owner completed it (commit metadata): skip it.
    AlreadyComplete,
    /// Below what was already fetched (a replay of the broker's buffer): ignore it.
    Stale,
}

impl OffsetTracker {
    pub(crate) fn new(start: Offset, precomplete: Vec<(Offset, Offset)>) -> Self {
        OffsetTracker {
            entries: VecDeque::new(),
            next: start,
            done_above: 0,
            precomplete: precomplete.into_iter().filter(|r| r.1 > start).collect(),
        }
    }

    /// Records a fetched offset carrying `items` items (0 means nothing to do: complete now).
    pub(crate) fn fetch(&mut self, offset: Offset, items: u32) -> Fetch {
        if offset < self.next {
            return Fetch::Stale;
        }
        self.next = offset + 1;
        while let Some(&(_, end)) = self.precomplete.front() {
            if end <= offset {
                self.precomplete.pop_front();
            } else {
                break;
            }
        }
        let already = matches!(self.precomplete.front(), Some(&(s, _)) if s <= offset);
        if already || items == 0 {
            if !self.entries.is_empty() {
                self.entries.push_back(Entry {
                    offset,
                    remaining: 0,
                });
                self.done_above += 1;
            }
            return if already {
                Fetch::AlreadyComplete
            } else {
                Fetch::Tracked
            };
        }
        self.entries.push_back(Entry {
            offset,
            remaining: items,
        });
        Fetch::Tracked
    }

    /// What [`fetch`](Self::fetch) would make of `offset`, without recording anything, so the
    /// caller can check its limits first.
    pub(crate) fn classify(&self, offset: Offset) -> Fetch {
        if offset < self.next {
            return Fetch::Stale;
        }
        match self.precomplete.iter().find(|r| r.1 > offset) {
            Some(&(s, _)) if s <= offset => Fetch::AlreadyComplete,
            _ => Fetch::Tracked,
        }
    }

    /// One item of `offset` completed. Returns true if the watermark moved.
    pub(crate) fn complete(&mut self, offset: Offset) -> bool {
        let Some(i) = self.position(offset) else {
            debug_assert!(false, "completion of an untracked offset {offset}");
            return false;
        };
        let e = &mut self.entries[i];
        debug_assert!(e.remaining > 0, "offset {offset} completed too often");
        e.remaining = e.remaining.saturating_sub(1);
        if e.remaining > 0 {
            return false;
        }
        if i != 0 {
            self.done_above += 1;
            return false;
        }
        self.entries.pop_front();
        while let Some(front) = self.entries.front() {
            if front.remaining != 0 {
                break;
            }
            self.entries.pop_front();
            self.done_above -= 1;
        }
        true
    }

    /// Where `offset` is in `entries`. A partition's offsets are usually consecutive (gaps come
    /// only from compaction and transaction markers), so the distance from the first entry is
    /// tried before a binary search.
    fn position(&self, offset: Offset) -> Option<usize> {
        let first = self.entries.front()?.offset;
        let guess = usize::try_from(offset.checked_sub(first)?).ok()?;
        if self.entries.get(guess).is_some_and(|e| e.offset == offset) {
            return Some(guess);
        }
        self.entries
            .binary_search_by_key(&offset, |e| e.offset)
            .ok()
    }

    /// The offset to commit: everything below it is complete. Offsets a previous owner completed
    /// count too, fetched again or not.
    pub(crate) fn watermark(&self) -> Offset {
        if let Some(e) = self.entries.front() {
            return e.offset;
        }
        let mut w = self.next;
        for &(s, e) in &self.precomplete {
            if s > w {
                break;
            }
            w = w.max(e);
        }
        w
    }

    /// Records fetched and not yet below the watermark.
    pub(crate) fn uncommitted(&self) -> usize {
        self.entries.len()
    }

    /// Completed offsets above the watermark (including those a previous owner completed and
    /// that were not fetched again yet), as sorted disjoint `[start, end)` ranges.
    pub(crate) fn completed_ranges(&self) -> Vec<(Offset, Offset)> {
        let mut out: Vec<(Offset, Offset)> = Vec::new();
        let mut push = |s: Offset, e: Offset| match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        };
        if self.done_above > 0 {
            for e in &self.entries {
                if e.remaining == 0 {
                    push(e.offset, e.offset + 1);
                }
            }
        }
        let floor = self.next.max(self.watermark());
        for &(s, e) in &self.precomplete {
            let s = s.max(floor);
            if s < e {
                push(s, e);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_the_lowest_incomplete() {
        let mut t = OffsetTracker::new(0, vec![]);
        for o in 0..4 {
            assert_eq!(t.fetch(o, 1), Fetch::Tracked);
        }
        assert!(!t.complete(3));
        assert!(!t.complete(1));
        assert_eq!(t.watermark(), 0);
        assert_eq!(t.completed_ranges(), vec![(1, 2), (3, 4)]);
        assert!(t.complete(0));
        assert_eq!(t.watermark(), 2);
        assert!(t.complete(2));
        assert_eq!(t.watermark(), 4);
    }

    #[test]
    fn gaps_never_block() {
        let mut t = OffsetTracker::new(10, vec![]);
        t.fetch(10, 1);
        t.fetch(15, 1);
        t.complete(10);
        assert_eq!(t.watermark(), 15);
        t.complete(15);
        assert_eq!(t.watermark(), 16);
    }

    #[test]
    fn completions_find_their_offset_across_gaps() {
        // Gaps put offsets at other positions than their distance from the first entry.
        let offsets = [10, 12, 13, 20, 21, 22, 40];
        let mut t = OffsetTracker::new(10, vec![]);
        for o in offsets {
            t.fetch(o, 1);
        }
        for o in [21, 13, 40, 12, 22, 20] {
            assert!(!t.complete(o), "{o} is above the watermark");
            assert_eq!(t.watermark(), 10);
        }
        assert!(t.complete(10));
        assert_eq!(t.watermark(), 41);
    }

    #[test]
    fn multi_item_records_complete_with_their_last_item() {
        let mut t = OffsetTracker::new(0, vec![]);
        t.fetch(0, 2);
        assert!(!t.complete(0));
        assert_eq!(t.watermark(), 0);
        assert!(t.complete(0));
        assert_eq!(t.watermark(), 1);
    }

    #[test]
    fn metadata_marks_are_skipped_and_kept_until_passed() {
        let mut t = OffsetTracker::new(5, vec![(7, 9)]);
        assert_eq!(t.completed_ranges(), vec![(7, 9)]);
        assert_eq!(t.fetch(5, 1), Fetch::Tracked);
        assert_eq!(t.fetch(7, 1), Fetch::AlreadyComplete);
        assert_eq!(t.completed_ranges(), vec![(7, 9)]);
        assert_eq!(t.fetch(8, 1), Fetch::AlreadyComplete);
        assert_eq!(t.fetch(9, 1), Fetch::Tracked);
        assert_eq!(t.fetch(3, 1), Fetch::Stale);
        t.complete(5);
        assert_eq!(t.watermark(), 9);
    }

    #[test]
    fn the_watermark_passes_offsets_a_previous_owner_completed() {
        let mut t = OffsetTracker::new(2, vec![(3, 4), (6, 8)]);
        t.fetch(2, 1);
        t.complete(2);
        assert_eq!(t.watermark(), 4);
        assert_eq!(t.completed_ranges(), vec![(6, 8)]);
    }
}
