//! Whole-image operations built on the engine: create, convert, merge, save an overlay,
//! check, map, and the guard that keeps an operation from overwriting its own input.

pub mod check;
pub mod convert;
pub mod create;
pub mod map;
pub mod overwrite;
