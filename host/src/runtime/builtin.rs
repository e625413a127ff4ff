//! The built-in cleaning transforms and aggregates, compiled by `build.rs` and
//! embedded in the binary, and the same cleaning as SQL stages.

/// `(name, component bytes)` for every built-in transform.
pub const BUILTINS: &[(&str, &[u8])] = &[
    ("clean-pin", include_bytes!(concat!(env!("OUT_DIR"), "/clean_pin.wasm"))),
    ("clean-geo", include_bytes!(concat!(env!("OUT_DIR"), "/clean_geo.wasm"))),
    ("clean-user", include_bytes!(concat!(env!("OUT_DIR"), "/clean_user.wasm"))),
    ("count-posts", include_bytes!(concat!(env!("OUT_DIR"), "/count_posts.wasm"))),
    ("follower-percentiles", include_bytes!(concat!(env!("OUT_DIR"), "/follower_percentiles.wasm"))),
    ("detect", include_bytes!(concat!(env!("OUT_DIR"), "/detect.wasm"))),
    // SPEC section 5 again, as SQL stages (docs/sql.md).
    ("clean-pin-sql", include_bytes!("sql/builtins/clean-pin.sql")),
    ("clean-geo-sql", include_bytes!("sql/builtins/clean-geo.sql")),
    ("clean-user-sql", include_bytes!("sql/builtins/clean-user.sql")),
];

pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

pub(crate) fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
