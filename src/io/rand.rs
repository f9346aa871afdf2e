//! Randomness the broker draws: hash-map keys and v4 UUIDs.
//!
//! In production these are random, as with the standard library. In a
//! simulation they come from the world's seed, so a seed replays exactly:
//! the iteration order of every map and every generated id (topic ids,
//! member ids, cluster id) are the same on every run of that seed, whatever
//! ran before on the thread.
//!
//! Code above the IO layer uses [`HashMap`] and [`HashSet`] from here rather
//! than the standard ones (whose `RandomState` cannot be seeded).

use std::hash::BuildHasher;

use super::sim;

/// A `std::collections::HashMap` hashed with [`HashState`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, HashState>;
/// A `std::collections::HashSet` hashed with [`HashState`].
pub type HashSet<T> = std::collections::HashSet<T, HashState>;

/// Keys of a map's hasher: random per map in production (resistant to
/// crafted collisions, like the standard `RandomState`), drawn from the
/// simulation's seed in a simulation.
#[derive(Clone, Debug)]
pub struct HashState(ahash::RandomState);

impl Default for HashState {
    fn default() -> Self {
        match sim::current() {
            None => HashState(ahash::RandomState::new()),
            Some(w) => {
                // From the seed alone, not from the world's generator nor
                // a count of maps: creating a map (a lazily created
                // thread-local one, say) must not shift anything else.
                let k = w.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                HashState(ahash::RandomState::with_seeds(
                    k,
                    k.rotate_left(17),
                    k.rotate_left(31),
                    !k,
                ))
            }
        }
    }
}

impl BuildHasher for HashState {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> uuid::Uuid {
    match sim::current() {
        None => uuid::Uuid::new_v4(),
        Some(w) => {
            let hi = u128::from(w.rand_u64());
            let lo = u128::from(w.rand_u64());
            uuid::Builder::from_random_bytes(((hi << 64) | lo).to_le_bytes()).into_uuid()
        }
    }
}
