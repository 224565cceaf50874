//! The reproductions this build contains. A paper crate adds its `Reproduction` here when it
//! lands; only systems that really exist are listed.

use pw_core::Reproduction;

pub fn reproductions() -> Vec<Box<dyn Reproduction>> {
    vec![
        Box::new(pw_pdiff::reproduce::PdiffReproduction::default()),
        Box::new(pw_glan::GlanReproduction::default()),
        Box::new(pw_glore::reproduce::GloreReproduction::default()),
    ]
}
