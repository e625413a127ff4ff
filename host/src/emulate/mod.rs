//! The user posting emulator: generates pin, geo and user events and posts them.

pub mod data;
