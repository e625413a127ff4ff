//! The listener's guards against the real binary: a token from the
//! environment that is empty or short refuses the start, naming the variable;
//! a request without a token is refused; HTTPS with a certificate that SIGHUP
//! replaces without a restart.

use sluice_tests::{Server, free_port, refused_start};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice-under-test");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const INGEST_TOKEN: &str = "ingest-token-0123456789";

/// A config with one topic and nothing else; `server` goes into `[server]`.
fn write_config(dir: &Path, server: &str) -> PathBuf {
    let config = dir.join("sluice.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n[server]\n{server}\n[log]\ntopics = [\"t.events\"]\n", dir.join("data").display())).expect("config");
    config
}

#[test]
fn an_empty_or_short_token_in_the_environment_refuses_the_start_and_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let cases = [
        ("SLUICE_ADMIN_TOKEN", "", "SLUICE_ADMIN_TOKEN is set but empty: unset it to use the generated token in"),
        ("SLUICE_ADMIN_TOKEN", "short", "SLUICE_ADMIN_TOKEN is 5 character(s) long, shorter than the 16 a token needs"),
        ("SLUICE_INGEST_TOKEN", "", "SLUICE_INGEST_TOKEN is set but empty: unset it to use open ingest routes"),
        ("SLUICE_INGEST_TOKEN", "0123456789abcde", "SLUICE_INGEST_TOKEN is 15 character(s) long"),
    ];
    for (var, value, want) in cases {
        let stderr = refused_start(SLUICE, &config, free_port(), &[(var, value)], Duration::from_secs(30)).unwrap_or_else(|e| panic!("{var}={value:?}: {e:#}"));
        assert!(stderr.contains(want), "{var}={value:?}: stderr should contain {want:?}:\n{stderr}");
    }
    assert!(!dir.path().join("data/admin.token").exists(), "nothing was started before the refusal");
}

#[test]
fn requests_without_the_token_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "public_status_page = false");
    let server = Server::start(SLUICE, &config, free_port(), &[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN), ("SLUICE_INGEST_TOKEN", INGEST_TOKEN)]).expect("starts");
    let client = reqwest::blocking::Client::new();
    let admin = |auth: Option<&str>| {
        let mut req = client.get(format!("{}/api/v1/pipelines", server.base_url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().expect("reachable").status().as_u16()
    };
    assert_eq!(admin(None), 401, "no Authorization header");
    assert_eq!(admin(Some("Bearer ")), 401, "an empty bearer token");
    assert_eq!(admin(Some("Bearer")), 401);
    assert_eq!(admin(Some(&format!("Bearer {INGEST_TOKEN}"))), 401, "the ingest token is not the admin token");
    assert_eq!(admin(Some(&format!("Basic {ADMIN_TOKEN}"))), 401);
    assert_eq!(admin(Some(&format!("Bearer {ADMIN_TOKEN}"))), 200);
    assert_eq!(client.get(format!("{}/", server.base_url)).send().expect("reachable").status().as_u16(), 401, "the status page is not public here");

    let produce = |auth: Option<&str>| {
        let mut req = client
            .post(format!("{}/topics/t.events", server.base_url))
            .header("content-type", "application/vnd.kafka.json.v2+json")
            .body(r#"{"records": [{"value": {"n": 1}}]}"#);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().expect("reachable").status().as_u16()
    };
    assert_eq!(produce(None), 401, "ingest without a token");
    assert_eq!(produce(Some("Bearer ")), 401);
    assert_eq!(produce(Some(&format!("Bearer {INGEST_TOKEN}"))), 200);
}

/// A self-signed certificate for 127.0.0.1 and its key, written by `openssl req`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// A client that trusts only `cert`, and tells which certificate it was shown.
fn trusting(cert: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(cert).expect("cert");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The DER bytes of the certificate in a PEM file.
fn der(cert: &Path) -> Vec<u8> {
    let out = Command::new("openssl").args(["x509", "-outform", "der", "-in"]).arg(cert).output().expect("openssl");
    assert!(out.status.success());
    out.stdout
}

/// The certificate the server presents to a new client that trusts only
/// `trusted`; `None` when the handshake or request failed. (A new client each
/// time: one that kept a connection, or resumes a TLS session, is not shown
/// the certificate again.)
fn presented(trusted: &Path, base: &str) -> Option<Vec<u8>> {
    let resp = trusting(trusted).get(format!("{base}/health")).send().ok()?;
    assert!(resp.status().is_success());
    resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).map(<[u8]>::to_vec)
}

/// Replace a file as a deployment tool would: write beside it, rename over it.
fn replace(path: &Path, from: &Path) {
    let staged = path.with_extension("new");
    std::fs::copy(from, &staged).expect("copy");
    std::fs::rename(&staged, path).expect("rename");
}

#[test]
fn https_with_a_certificate_that_sighup_replaces_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_cert, first_key) = self_signed(dir.path(), "first");
    let (second_cert, second_key) = self_signed(dir.path(), "second");
    // The files the config names; their contents are replaced below.
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    replace(&cert, &first_cert);
    replace(&key, &first_key);
    let config = write_config(dir.path(), &format!("admin_token = \"{ADMIN_TOKEN}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}", cert.display(), key.display()));

    let trusts_first = trusting(&first_cert);
    let port = free_port();
    let mut server = Server::start_https(SLUICE, &config, port, &[], &trusts_first).expect("starts with HTTPS");
    assert!(server.base_url.starts_with("https://"));
    assert_eq!(presented(&first_cert, &server.base_url), Some(der(&first_cert)), "the first certificate is presented");
    assert_eq!(presented(&second_cert, &server.base_url), None, "a client trusting only the second certificate refuses the first");
    let status = trusts_first.get(format!("{}/api/v1/pipelines", server.base_url)).bearer_auth(ADMIN_TOKEN).send().expect("admin over HTTPS").status();
    assert_eq!(status, 200);
    let plain = reqwest::blocking::Client::new().get(format!("http://127.0.0.1:{port}/health")).timeout(Duration::from_secs(5)).send();
    assert!(plain.is_err() || !plain.is_ok_and(|r| r.status().is_success()), "no plain HTTP on an HTTPS listener");

    // A new pair in place, then SIGHUP: new connections get it; the process is the same.
    replace(&cert, &second_cert);
    replace(&key, &second_key);
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(&second_cert, &server.base_url).is_none() {
        assert!(Instant::now() < deadline, "the second certificate was not presented after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(presented(&second_cert, &server.base_url), Some(der(&second_cert)));
    assert_eq!(presented(&first_cert, &server.base_url), None, "the first certificate is no longer presented");

    // A bad new pair (the key of another certificate, then no certificate): kept the last good one.
    replace(&key, &first_key);
    server.hangup();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&cert, "not a certificate").expect("write");
    server.hangup();
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.alive(), "a bad certificate on SIGHUP does not stop the process");
    assert_eq!(presented(&second_cert, &server.base_url), Some(der(&second_cert)), "the last good certificate stays");
    assert!(server.terminate().expect("terminate"), "stops cleanly");
}

#[test]
fn a_certificate_that_does_not_load_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_cert, _) = self_signed(dir.path(), "first");
    let (_, second_key) = self_signed(dir.path(), "second");
    let config = write_config(dir.path(), &format!("tls = {{ cert = \"{}\", key = \"{}\" }}", first_cert.display(), second_key.display()));
    let stderr = refused_start(SLUICE, &config, free_port(), &[], Duration::from_secs(30)).expect("refused");
    assert!(stderr.contains("does not go with the certificate"), "{stderr}");
    let config = write_config(dir.path(), &format!("tls = {{ cert = \"{}\", key = \"{}\" }}", dir.path().join("missing.crt").display(), second_key.display()));
    let stderr = refused_start(SLUICE, &config, free_port(), &[], Duration::from_secs(30)).expect("refused");
    assert!(stderr.contains("missing.crt") && stderr.contains("server.tls.cert"), "{stderr}");
}
