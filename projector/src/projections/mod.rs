//! The read models the projector maintains, one module per table family.

pub mod projects;

pub use projects::ProjectsProjection;
