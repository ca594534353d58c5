//! Near-duplicate search over frame signatures (the `signatures` table of the `signature`
//! operator): a sub-linear index over 256-bit hashes ([`index`]) and the clip-level matching and
//! grouping rule ([`groups`]). The dataset-wide pass that runs them over every partition's
//! signatures is built on these.

pub mod groups;
pub mod index;
