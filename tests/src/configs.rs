//! Config sections the tests build their `sluice serve` configs from.

use std::path::Path;

/// One `[[pipeline]]` section per kind: it reads `topic(kind)`, cleans with
/// `clean-<kind>`, lands raw and the table `<kind>`; `extra` goes into each.
pub fn cleaning_pipelines(kinds: &[&str], topic: impl Fn(&str) -> String, extra: &str) -> String {
    kinds
        .iter()
        .map(|kind| {
            format!(
                "\n[[pipeline]]\nname = \"{kind}\"\ntopics = [\"{}\"]\ntransforms = [\"clean-{kind}\"]\nland_raw = true\ntable = {{ name = \"{kind}\" }}\n{extra}\n",
                topic(kind)
            )
        })
        .collect()
}

/// A config with one topic `t.pin` (3 partitions) and one pipeline `pin`
/// cleaning it into raw + table; `server` lines go under `[server]`, `pipeline`
/// lines are appended to the pipeline's section.
pub fn pin_config(data_dir: &Path, server: &str, pipeline: &str) -> String {
    format!(
        "data_dir = \"{}\"\n[server]\n{server}\n[log]\ntopics = [\"t.pin\"]\npartitions = 3\n\n[[pipeline]]\nname = \"pin\"\ntopics = [\"t.pin\"]\ntransforms = [\"clean-pin\"]\nland_raw = true\ntable = {{ name = \"pin\" }}\n{pipeline}\n",
        data_dir.display()
    )
}
