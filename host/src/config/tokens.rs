//! The one rule every bearer token obeys, wherever it comes from: the config
//! file (`server.admin_token`, `server.ingest_token`), the environment
//! (`SLUICE_ADMIN_TOKEN`, `SLUICE_INGEST_TOKEN`) or the generated token file.
//! A token left empty or short by mistake (an unmounted secret leaves its
//! variable set but empty) must stop the start, never open the API.

use std::ffi::OsString;
use std::path::Path;

/// The fewest characters a token may have.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFlaw {
    Empty,
    Short(usize),
    /// Characters no `Authorization` header can carry (HTTP header values are
    /// visible ASCII), so no request could ever match it.
    NotVisibleAscii,
}

impl TokenFlaw {
    /// What is wrong, after the name of where the token came from.
    fn describe(&self) -> String {
        match self {
            TokenFlaw::Empty => "is set but empty".into(),
            TokenFlaw::Short(n) => format!("is {n} character(s) long, shorter than the {MIN_TOKEN_CHARS} a token needs"),
            TokenFlaw::NotVisibleAscii => "has characters other than visible ASCII, which no Authorization header can carry".into(),
        }
    }
}

/// The token as it is used: surrounding whitespace (a secret file's trailing
/// newline) is not part of it. Checked against the rule.
pub fn checked(raw: &str) -> Result<&str, TokenFlaw> {
    let token = raw.trim();
    if token.is_empty() {
        Err(TokenFlaw::Empty)
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Err(TokenFlaw::NotVisibleAscii)
    } else if token.len() < MIN_TOKEN_CHARS {
        Err(TokenFlaw::Short(token.len()))
    } else {
        Ok(token)
    }
}

/// Which of the listener's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Admin,
    Ingest,
}

impl TokenRole {
    pub fn config_key(self) -> &'static str {
        match self {
            TokenRole::Admin => "server.admin_token",
            TokenRole::Ingest => "server.ingest_token",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            TokenRole::Admin => "SLUICE_ADMIN_TOKEN",
            TokenRole::Ingest => "SLUICE_INGEST_TOKEN",
        }
    }

    /// What the process uses when no token of this role is given.
    fn without_one(self, data_dir: &Path) -> String {
        match self {
            TokenRole::Admin => format!("the generated token in {}", data_dir.join(ADMIN_TOKEN_FILE).display()),
            TokenRole::Ingest => "open ingest routes (no token)".into(),
        }
    }
}

/// The generated admin token's file, under the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A token of the config file, checked: the refusal names the key.
pub fn from_config(role: TokenRole, value: &str, data_dir: &Path) -> Result<String, String> {
    checked(value).map(str::to_owned).map_err(|flaw| {
        format!(
            "{} {}: remove it to use {}, or set at least {MIN_TOKEN_CHARS} visible ASCII characters",
            role.config_key(),
            flaw.describe(),
            role.without_one(data_dir)
        )
    })
}

/// The token of `role` to use: the environment's over the config file's
/// (`configured`, already checked), the environment's checked here; the refusal
/// names the variable and what unsetting it would fall back to.
pub fn resolve(role: TokenRole, configured: Option<&str>, env: Option<OsString>, data_dir: &Path) -> Result<Option<String>, String> {
    let Some(value) = env else { return Ok(configured.map(str::to_owned)) };
    let flaw = match value.to_str() {
        Some(text) => match checked(text) {
            Ok(token) => return Ok(Some(token.to_owned())),
            Err(flaw) => flaw,
        },
        None => TokenFlaw::NotVisibleAscii,
    };
    let fallback = match configured {
        Some(_) => format!("{} from the config file", role.config_key()),
        None => role.without_one(data_dir),
    };
    Err(format!("{} {}: unset it to use {fallback}, or set at least {MIN_TOKEN_CHARS} visible ASCII characters", role.env_var(), flaw.describe()))
}

/// The token kept in a token file, if the file holds one: `None` when the file
/// is missing or empty (a new token is to be written). A file holding a token
/// that breaks the rule (written by hand, say) is refused rather than replaced.
pub fn from_file(path: &Path) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading the token file {}: {e}", path.display())),
    };
    match checked(&text) {
        Ok(token) => Ok(Some(token.to_owned())),
        Err(TokenFlaw::Empty) => Ok(None),
        Err(flaw) => Err(format!(
            "the token file {} {}: delete it to have a new token generated, or write at least {MIN_TOKEN_CHARS} visible ASCII characters",
            path.display(),
            flaw.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef";

    #[test]
    fn a_token_is_sixteen_visible_ascii_characters_without_surrounding_space() {
        assert_eq!(checked(GOOD), Ok(GOOD));
        assert_eq!(checked(&format!("  {GOOD}\n")), Ok(GOOD), "a secret file's newline is not part of the token");
        assert_eq!(checked(""), Err(TokenFlaw::Empty));
        assert_eq!(checked(" \n\t"), Err(TokenFlaw::Empty));
        assert_eq!(checked("short"), Err(TokenFlaw::Short(5)));
        assert_eq!(checked(&GOOD[..15]), Err(TokenFlaw::Short(15)));
        assert_eq!(checked("0123456789 abcdef"), Err(TokenFlaw::NotVisibleAscii));
        assert_eq!(checked("0123456789abcdéf"), Err(TokenFlaw::NotVisibleAscii));
    }

    #[test]
    fn the_environment_overrides_the_config_file_and_is_held_to_the_same_rule() {
        let dir = Path::new("/data");
        let env = |v: &str| Some(OsString::from(v));
        assert_eq!(resolve(TokenRole::Admin, None, None, dir), Ok(None));
        assert_eq!(resolve(TokenRole::Admin, Some(GOOD), None, dir), Ok(Some(GOOD.into())));
        assert_eq!(resolve(TokenRole::Admin, Some(GOOD), env("fedcba9876543210\n"), dir), Ok(Some("fedcba9876543210".into())));

        let err = resolve(TokenRole::Admin, None, env(""), dir).unwrap_err();
        assert_eq!(
            err,
            "SLUICE_ADMIN_TOKEN is set but empty: unset it to use the generated token in /data/admin.token, or set at least 16 visible ASCII characters"
        );
        let err = resolve(TokenRole::Admin, Some(GOOD), env("short"), dir).unwrap_err();
        assert!(err.starts_with("SLUICE_ADMIN_TOKEN is 5 character(s) long"), "{err}");
        assert!(err.contains("unset it to use server.admin_token from the config file"), "{err}");
        let err = resolve(TokenRole::Ingest, None, env("  "), dir).unwrap_err();
        assert!(err.starts_with("SLUICE_INGEST_TOKEN is set but empty: unset it to use open ingest routes"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let err = resolve(TokenRole::Ingest, None, Some(OsString::from_vec(vec![0xff; 20])), dir).unwrap_err();
            assert!(err.contains("other than visible ASCII"), "{err}");
        }
    }

    #[test]
    fn a_config_file_token_names_its_key() {
        let dir = Path::new("/data");
        assert_eq!(from_config(TokenRole::Ingest, GOOD, dir), Ok(GOOD.into()));
        let err = from_config(TokenRole::Admin, "", dir).unwrap_err();
        assert!(err.starts_with("server.admin_token is set but empty: remove it to use the generated token in /data/admin.token"), "{err}");
        let err = from_config(TokenRole::Ingest, "abc", dir).unwrap_err();
        assert!(err.starts_with("server.ingest_token is 3 character(s) long"), "{err}");
    }

    #[test]
    fn a_token_file_is_used_generated_afresh_when_empty_and_refused_when_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        assert_eq!(from_file(&path), Ok(None), "missing: generate one");
        std::fs::write(&path, "").expect("write");
        assert_eq!(from_file(&path), Ok(None), "empty: generate one");
        std::fs::write(&path, format!("{GOOD}\n")).expect("write");
        assert_eq!(from_file(&path), Ok(Some(GOOD.into())));
        std::fs::write(&path, "hunter2").expect("write");
        let err = from_file(&path).unwrap_err();
        assert!(err.contains("is 7 character(s) long") && err.contains("delete it to have a new token generated"), "{err}");
    }
}
