//! The committed-position bitmaps of status lists (`status_list_blocks`, migration 12): which
//! positions of a list hold a token that was committed, one bit each, a row per block of
//! [`BLOCK_POSITIONS`] consecutive positions.
//!
//! A list is rendered from them (every set bit, through the list's permutation, reads VALID)
//! and from the list's denied rows, so a mint adds no index entry of its own: the group commit
//! sets its batch's bits in the batch's transaction, one read-modify-write per touched block.
//! A block's row is only ever written by the process that owns its list (the allocator's
//! compare-and-set) and by the tombstone purge, which clears the bits of the rows it deletes;
//! on PostgreSQL both lock the row first (`FOR UPDATE`), so neither loses the other's bits. The
//! read-modify-write, rather than bits kept in memory, also keeps a database restored from a
//! backup honest: a bit is set only next to the row it stands for, in the same transaction.

use std::collections::BTreeMap;

use crate::domain::TokenRecord;

/// Positions per block row: 512 bytes of bits.
pub const BLOCK_POSITIONS: u32 = 4096;

/// Bytes of one block's bitmap.
const BLOCK_BYTES: usize = (BLOCK_POSITIONS / 8) as usize;

/// The positions of one block to set (or clear) bits at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockChange<'a> {
    /// The list.
    pub list: &'a str,
    /// The block's first position.
    pub first_pos: i64,
    /// Offsets inside the block.
    pub offsets: Vec<u32>,
}

/// The blocks touched by `entries` (list and position), each once, in key order (so that two
/// writers that lock several blocks lock them in the same order).
pub(crate) fn changes_of<'a>(
    entries: impl IntoIterator<Item = (&'a str, u32)>,
) -> Vec<BlockChange<'a>> {
    let mut blocks: BTreeMap<(&str, u32), Vec<u32>> = BTreeMap::new();
    for (list, position) in entries {
        blocks
            .entry((list, position / BLOCK_POSITIONS))
            .or_default()
            .push(position % BLOCK_POSITIONS);
    }
    blocks
        .into_iter()
        .map(|((list, block), offsets)| BlockChange {
            list,
            first_pos: i64::from(block) * i64::from(BLOCK_POSITIONS),
            offsets,
        })
        .collect()
}

/// The blocks that `records`' positions fall in (records without a position: none).
pub(crate) fn changes_for_records(records: &[TokenRecord]) -> Vec<BlockChange<'_>> {
    changes_of(records.iter().filter_map(|record| {
        let entry = record.status_entry.as_ref()?;
        Some((entry.list.as_str(), record.status_position?))
    }))
}

/// `bits` (a stored block, or `None` for a block without a row yet) with `offsets` set, or
/// cleared when `set` is false.
pub(crate) fn apply(bits: Option<Vec<u8>>, offsets: &[u32], set: bool) -> Vec<u8> {
    let mut bits = bits.unwrap_or_default();
    bits.resize(bits.len().max(BLOCK_BYTES), 0);
    for &offset in offsets {
        let (byte, mask) = ((offset / 8) as usize, 1u8 << (offset % 8));
        if set {
            bits[byte] |= mask;
        } else {
            bits[byte] &= !mask;
        }
    }
    bits
}

/// Whether a stored block is well formed: it starts at a multiple of [`BLOCK_POSITIONS`] and
/// holds at most one block's bits (anything else is a corrupt row, never rendered).
pub fn is_well_formed(first_pos: i64, bits: &[u8]) -> bool {
    first_pos >= 0 && first_pos % i64::from(BLOCK_POSITIONS) == 0 && bits.len() <= BLOCK_BYTES
}

/// The positions set in the block starting at `first_pos` (a block that
/// [`is_well_formed`]; a negative start reads as 0).
pub fn positions_in(first_pos: i64, bits: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let first = u64::try_from(first_pos).unwrap_or(0);
    bits.iter().enumerate().flat_map(move |(byte, &value)| {
        (0..8u64)
            .filter(move |bit| value & (1 << bit) != 0)
            .map(move |bit| first + byte as u64 * 8 + bit)
    })
}

/// The two statements of a block's read-modify-write, with one backend's placeholders.
#[derive(Debug)]
pub(crate) struct BlockStatements {
    /// `SELECT bits` of one block (locking it on PostgreSQL); binds list, first position.
    pub select: String,
    /// Inserts or replaces one block's bits; binds list, first position, bits.
    pub upsert: String,
}

impl BlockStatements {
    /// The statements for SQLite (`postgres` false) or PostgreSQL.
    pub(crate) fn new(postgres: bool) -> Self {
        let (p1, p2, p3) = if postgres {
            ("$1", "$2", "$3")
        } else {
            ("?", "?", "?")
        };
        let lock = if postgres { " FOR UPDATE" } else { "" };
        Self {
            select: format!(
                "SELECT bits FROM status_list_blocks WHERE list_id = {p1} AND first_pos = {p2}{lock}"
            ),
            upsert: format!(
                "INSERT INTO status_list_blocks (list_id, first_pos, bits) VALUES ({p1}, {p2}, {p3}) \
                 ON CONFLICT (list_id, first_pos) DO UPDATE SET bits = excluded.bits"
            ),
        }
    }
}

/// Sets (`$set` true) or clears the bits of `$changes` (`BlockChange`s) in transaction `$txn`
/// (a sqlx transaction of either backend: a macro, as the types differ), with the statements of
/// `$statements` (`BlockStatements`).
macro_rules! write_block_bits {
    ($txn:expr, $statements:expr, $changes:expr, $set:expr) => {{
        let statements: &$crate::store::status_blocks::BlockStatements = $statements;
        for change in $changes {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar(AssertSqlSafe(statements.select.as_str()))
                    .bind(change.list)
                    .bind(change.first_pos)
                    .fetch_optional(&mut *$txn)
                    .await?;
            let bits = $crate::store::status_blocks::apply(stored, &change.offsets, $set);
            sqlx::query(AssertSqlSafe(statements.upsert.as_str()))
                .bind(change.list)
                .bind(change.first_pos)
                .bind(bits)
                .execute(&mut *$txn)
                .await?;
        }
    }};
}
pub(crate) use write_block_bits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_group_by_block_in_key_order() {
        let changes = changes_of([("b", 5), ("a", 4097), ("b", 4095), ("a", 1), ("a", 4096)]);
        assert_eq!(
            changes,
            vec![
                BlockChange {
                    list: "a",
                    first_pos: 0,
                    offsets: vec![1]
                },
                BlockChange {
                    list: "a",
                    first_pos: 4096,
                    offsets: vec![1, 0]
                },
                BlockChange {
                    list: "b",
                    first_pos: 0,
                    offsets: vec![5, 4095]
                },
            ]
        );
    }

    #[test]
    fn bits_set_and_clear_and_read_back_as_positions() {
        let bits = apply(None, &[0, 9, 4095], true);
        assert_eq!(bits.len(), BLOCK_BYTES);
        assert_eq!(
            positions_in(8192, &bits).collect::<Vec<_>>(),
            [8192, 8201, 12287]
        );
        let bits = apply(Some(bits), &[9, 10], false);
        assert_eq!(
            positions_in(0, &bits).collect::<Vec<_>>(),
            [0, 4095],
            "clearing an unset bit leaves it unset"
        );
        assert!(is_well_formed(8192, &bits) && is_well_formed(0, &[]));
        assert!(!is_well_formed(-4096, &bits), "a negative start");
        assert!(!is_well_formed(100, &bits), "a start inside a block");
        assert!(
            !is_well_formed(0, &[0; BLOCK_BYTES + 1]),
            "bits into the next block"
        );
        let grown = apply(Some(vec![0b1]), &[3], true);
        assert_eq!(grown.len(), BLOCK_BYTES, "a short stored block is padded");
        assert_eq!(positions_in(0, &grown).collect::<Vec<_>>(), [0, 3]);
    }
}
