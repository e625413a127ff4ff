//! The user posting emulator: generates pin, geo and user events (SPEC section 2)
//! and posts them through the ingest API shapes.

pub mod data;
pub mod post;
