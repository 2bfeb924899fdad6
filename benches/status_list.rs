//! What a Token Status List costs (divan): building (`encode`: ZLIB at the highest level and
//! base64url) and reading (`decode`) lists of 2^17 entries (the default list size) and 2^20
//! entries (the largest), 2 bits each, in the shapes a fail-closed list takes: every entry
//! INVALID (a new list), and a list whose used entries are scattered by the index permutation,
//! 90% VALID and 10% revoked (INVALID), with a quarter or all of the list used.
//!
//! `cargo bench --bench status_list`. Before the timings it prints each shape's size on the wire
//! (the `lst` text), which is most of a Status List Token.

use std::hint::black_box;

use tokenmint_jwt::status_list::{StatusList, TokenStatus};

/// A list of `entries` 2-bit entries, INVALID but for about one in `used_every` (chosen by a
/// xorshift generator, as scattered as the index permutation makes them), 9 in 10 of which are
/// VALID and the rest revoked (INVALID).
fn list(entries: usize, used_every: u64) -> StatusList {
    let mut list = StatusList::filled(2, entries / 4, TokenStatus::Invalid);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for index in 0..entries {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(used_every) && !(state >> 32).is_multiple_of(10) {
            list.set(index, TokenStatus::Valid);
        }
    }
    list
}

/// The shapes measured: (name, entries, one used in how many).
const SHAPES: [(&str, usize, u64); 6] = [
    ("2^17 new", 1 << 17, u64::MAX),
    ("2^17 quarter used", 1 << 17, 4),
    ("2^17 full", 1 << 17, 1),
    ("2^20 new", 1 << 20, u64::MAX),
    ("2^20 quarter used", 1 << 20, 4),
    ("2^20 full", 1 << 20, 1),
];

fn main() {
    for (name, entries, used_every) in SHAPES {
        let lst = list(entries, used_every).encode();
        println!("{name}: lst {} bytes", lst.len());
    }
    divan::main();
}

#[divan::bench(args = [0, 1, 2, 3, 4, 5])]
fn encode(bencher: divan::Bencher<'_, '_>, shape: usize) {
    let (_, entries, used_every) = SHAPES[shape];
    let list = list(entries, used_every);
    bencher.bench(|| black_box(&list).encode());
}

#[divan::bench(args = [0, 1, 2, 3, 4, 5])]
fn decode(bencher: divan::Bencher<'_, '_>, shape: usize) {
    let (_, entries, used_every) = SHAPES[shape];
    let lst = list(entries, used_every).encode();
    bencher.bench(|| StatusList::decode(2, black_box(&lst), 1 << 20).expect("decodes"));
}

/// One entry index from a position, as each new token's allocation computes it (a list of the
/// default size: the Feistel domain is 2^18, so cycle-walking runs about twice).
#[divan::bench]
fn index_of(bencher: divan::Bencher<'_, '_>) {
    let permutation = tokenmint::issuance::status_index::IndexPermutation::new(
        &[7; 32],
        b"q3sRgXJ1T9a0m6V8wYk2Zg",
        1 << 17,
    );
    let mut position = 0u64;
    bencher.bench_local(|| {
        position = (position + 1) % (1 << 17);
        permutation.index_of(black_box(position))
    });
}
