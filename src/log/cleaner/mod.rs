//! Log compaction (`cleanup.policy=compact`), pure core: no IO.

pub mod filter;
pub mod keymap;
pub mod select;

pub use filter::{filter_batch, FilterOutcome, FilterPolicy, TxnFilter};
pub use keymap::KeyMap;
