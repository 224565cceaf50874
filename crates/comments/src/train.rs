//! Training of the miniature's code models: next-byte prediction on random windows of the
//! packed corpus (each text framed by BOS ... EOS), pw-nn's AdamW loop (`bytelm`).

pub use pw_nn::bytelm::{pack, train_windows};
