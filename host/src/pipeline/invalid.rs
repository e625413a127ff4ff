//! "The definition is wrong", as a type: what building a pipeline returns when
//! the config it was given cannot run as written (a table that needs a schema
//! it has no way to get, say), so whoever asked for the pipeline can tell a
//! definition to fix from something that broke. It travels inside the build's
//! `anyhow::Error`; find it with `downcast_ref`.

/// A pipeline definition that cannot run as written; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPipeline(pub String);

/// Whether `e` (or an error it wraps) says the definition is wrong.
pub fn is_invalid(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<InvalidPipeline>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_invalid_definition_is_found_under_added_context_and_nothing_else_is() {
        let wrapped = Err::<(), _>(anyhow::Error::from(InvalidPipeline("table `x` needs a schema".into()))).context("starting pipeline `x`").unwrap_err();
        assert!(is_invalid(&wrapped));
        assert_eq!(format!("{wrapped:#}"), "starting pipeline `x`: table `x` needs a schema");
        assert!(!is_invalid(&anyhow::anyhow!("disk full")));
    }
}
