//! Log compaction (`cleanup.policy=compact`), pure core: no IO.

pub mod keymap;
pub mod select;

pub use keymap::KeyMap;
