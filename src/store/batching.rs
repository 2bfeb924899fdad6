//! Batched statements: many rows per statement, in chunks whose sizes keep the statement texts
//! few (the group commit's INSERTs, the last-used flush's UPDATEs).

/// Most rows per statement on SQLite (its bound-parameter limit is 32,766).
pub(super) const SQLITE_CHUNK_ROWS: usize = 64;

/// Most rows per statement on PostgreSQL: a message larger than one TCP segment stalls ~40 ms on
/// Nagle + delayed ACK (sqlx does not set TCP_NODELAY).
pub(super) const POSTGRES_CHUNK_ROWS: usize = 16;

/// Splits `rows` into chunks of at most `max` rows whose sizes are powers of two, so that each
/// connection prepares at most log2(max) + 1 distinct statements per batch kind and reuses them
/// from sqlx's statement cache.
pub(super) fn power_of_two_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_power_of_two_statements() {
        let rows: Vec<usize> = (0..203).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&rows, 64).map(<[usize]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        let rejoined: Vec<usize> = power_of_two_chunks(&rows, 64).flatten().copied().collect();
        assert_eq!(rejoined, rows, "every row once, in order");
        assert_eq!(power_of_two_chunks(&rows[..0], 64).count(), 0);
    }
}
