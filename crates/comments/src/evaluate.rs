//! The miniature's metrics: NL-conditioned code likelihood, i.e. the bits per byte of a
//! function's body (comments removed) given its signature and docstring, on held-out
//! standard-library functions and on HumanEval's prompts and canonical solutions; paired
//! differences between two models with a 95% interval over the examples.

pub use pw_nn::bytelm::{NlExample, PairedDiff, bits_per_byte, mean, paired_diff};
