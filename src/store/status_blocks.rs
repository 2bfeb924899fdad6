//! The committed-position bitmaps of status lists (`status_list_blocks`, migration 12): which
//! positions of a list hold a token that was committed, one bit each, a row per block of
//! [`BLOCK_POSITIONS`] consecutive positions (a 64-bit integer).
//!
//! A list is rendered from them (every set bit, through the list's permutation, reads VALID)
//! and from the list's denied rows, so a mint adds no index entry of its own: the group commit
//! ORs its batch's bits into their blocks with one multi-row upsert in the batch's transaction
//! (a batch's positions are nearly consecutive, so it touches a row or two). The tombstone purge
//! clears the bits of the rows it deletes, in its own transaction. Both are single statements
//! that combine bits in SQL (`bits | new`, `bits & ~old`), never a read followed by a write, so
//! neither can lose the other's bits on either database, and a bit is set only in the
//! transaction that commits its token row, also after a restore from a backup.

use std::collections::BTreeMap;

use crate::domain::TokenRecord;

/// Positions per block row: the bits of one `BIGINT`.
pub const BLOCK_POSITIONS: u32 = 64;

/// Most blocks one upsert statement writes (3 parameters each).
pub(crate) const MAX_BLOCKS_PER_STATEMENT: usize = 64;

/// The bits of one block to set (or clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockChange<'a> {
    /// The list.
    pub list: &'a str,
    /// The block's first position.
    pub first_pos: i64,
    /// The bits, position `first_pos + n` at bit `n`.
    pub mask: i64,
}

/// The blocks touched by `entries` (list and position), each once, in key order (so that two
/// transactions that touch several blocks lock them in the same order).
pub(crate) fn changes_of<'a>(
    entries: impl IntoIterator<Item = (&'a str, u32)>,
) -> Vec<BlockChange<'a>> {
    let mut blocks: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for (list, position) in entries {
        *blocks
            .entry((list, position / BLOCK_POSITIONS))
            .or_default() |= 1 << (position % BLOCK_POSITIONS);
    }
    blocks
        .into_iter()
        .map(|((list, block), mask)| BlockChange {
            list,
            first_pos: i64::from(block) * i64::from(BLOCK_POSITIONS),
            mask: i64::from_ne_bytes(mask.to_ne_bytes()),
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

/// Whether a stored block's start is well formed: a multiple of [`BLOCK_POSITIONS`], not
/// negative (anything else is a corrupt row, never rendered).
pub fn is_well_formed(first_pos: i64) -> bool {
    first_pos >= 0 && first_pos % i64::from(BLOCK_POSITIONS) == 0
}

/// The positions set in the block starting at `first_pos` (one that [`is_well_formed`]).
pub fn positions_in(first_pos: i64, bits: i64) -> impl Iterator<Item = u64> {
    let first = u64::try_from(first_pos).unwrap_or(0);
    let bits = u64::from_ne_bytes(bits.to_ne_bytes());
    (0..u64::from(BLOCK_POSITIONS))
        .filter(move |bit| bits & (1 << bit) != 0)
        .map(move |bit| first + bit)
}

/// The upsert that ORs `blocks` blocks' bits into their rows (binds list, first position and
/// bits per block), with PostgreSQL's placeholders or SQLite's.
pub(crate) fn set_sql(blocks: usize, postgres: bool) -> String {
    let values: Vec<String> = (0..blocks)
        .map(|block| {
            let params: Vec<String> = (1..=3)
                .map(|col| {
                    if postgres {
                        format!("${}", block * 3 + col)
                    } else {
                        "?".to_owned()
                    }
                })
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO status_list_blocks (list_id, first_pos, bits) VALUES {} \
         ON CONFLICT (list_id, first_pos) DO UPDATE SET bits = status_list_blocks.bits | excluded.bits",
        values.join(", ")
    )
}

/// The UPDATE that clears bits of one block (binds the bits to keep, list, first position).
pub(crate) fn clear_sql(postgres: bool) -> &'static str {
    if postgres {
        "UPDATE status_list_blocks SET bits = bits & $1 WHERE list_id = $2 AND first_pos = $3"
    } else {
        "UPDATE status_list_blocks SET bits = bits & ? WHERE list_id = ? AND first_pos = ?"
    }
}

/// Sets the bits of `$changes` (`&[BlockChange]`) in transaction `$txn` (a sqlx transaction of
/// either backend: a macro, as the types differ); `$postgres` picks the placeholders.
macro_rules! set_block_bits {
    ($txn:expr, $changes:expr, $postgres:expr) => {{
        let changes: &[$crate::store::status_blocks::BlockChange<'_>] = $changes;
        for chunk in changes.chunks($crate::store::status_blocks::MAX_BLOCKS_PER_STATEMENT) {
            let sql = $crate::store::status_blocks::set_sql(chunk.len(), $postgres);
            let query = chunk
                .iter()
                .fold(sqlx::query(AssertSqlSafe(sql)), |q, change| {
                    q.bind(change.list).bind(change.first_pos).bind(change.mask)
                });
            query.execute(&mut *$txn).await?;
        }
    }};
}
pub(crate) use set_block_bits;

/// Clears the bits of `$changes` (`&[BlockChange]`) in transaction `$txn`, as
/// [`set_block_bits!`] sets them.
macro_rules! clear_block_bits {
    ($txn:expr, $changes:expr, $postgres:expr) => {{
        let changes: &[$crate::store::status_blocks::BlockChange<'_>] = $changes;
        for change in changes {
            sqlx::query($crate::store::status_blocks::clear_sql($postgres))
                .bind(!change.mask)
                .bind(change.list)
                .bind(change.first_pos)
                .execute(&mut *$txn)
                .await?;
        }
    }};
}
pub(crate) use clear_block_bits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_group_by_block_in_key_order() {
        let changes = changes_of([("b", 5), ("a", 65), ("b", 63), ("a", 1), ("a", 64)]);
        assert_eq!(
            changes,
            vec![
                BlockChange {
                    list: "a",
                    first_pos: 0,
                    mask: 0b10
                },
                BlockChange {
                    list: "a",
                    first_pos: 64,
                    mask: 0b11
                },
                BlockChange {
                    list: "b",
                    first_pos: 0,
                    mask: (1 << 5) | i64::MIN
                },
            ]
        );
    }

    #[test]
    fn bits_read_back_as_positions_the_top_bit_included() {
        let [change] = changes_of([("a", 128), ("a", 137), ("a", 191)])
            .try_into()
            .unwrap();
        assert!(change.mask < 0, "position 63 of a block is the sign bit");
        assert_eq!(
            positions_in(change.first_pos, change.mask).collect::<Vec<_>>(),
            [128, 137, 191]
        );
        assert!(is_well_formed(128) && is_well_formed(0));
        assert!(!is_well_formed(-64), "a negative start");
        assert!(!is_well_formed(100), "a start inside a block");
    }

    #[test]
    fn the_upsert_numbers_every_parameter() {
        let sql = set_sql(2, true);
        assert!(
            sql.contains("VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT"),
            "{sql}"
        );
        assert_eq!(set_sql(3, false).matches('?').count(), 9);
    }
}
