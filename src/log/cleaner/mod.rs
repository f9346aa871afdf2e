//! Log compaction (`cleanup.policy=compact`), pure core: no IO.

pub mod keymap;

pub use keymap::KeyMap;
