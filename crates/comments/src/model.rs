//! The miniature's code model: pw-nn's byte-level decoder-only transformer (`bytelm`), 256
//! byte tokens plus BOS, EOS and PAD.

pub use pw_nn::bytelm::{BOS, PAD, encode, new_lm};
