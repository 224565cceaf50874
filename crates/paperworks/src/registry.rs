//! The reproductions this build contains, in the order `paperworks reproduce` runs them. A
//! paper crate's `Reproduction` is listed here (see the README's "Adding a paper").

use pw_core::Reproduction;

pub fn reproductions() -> Vec<Box<dyn Reproduction>> {
    vec![
        Box::new(pw_pdiff::reproduce::PdiffReproduction::default()),
        Box::new(pw_glan::GlanReproduction::default()),
        Box::new(pw_glore::reproduce::GloreReproduction::default()),
        Box::new(pw_videoprism::reproduce::VideoPrismReproduction::default()),
        Box::new(pw_comments::reproduce::CommentsReproduction::default()),
        Box::new(pw_madbench::reproduce::MadBenchReproduction::default()),
        Box::new(pw_recap::reproduce::RecapReproduction::default()),
    ]
}
