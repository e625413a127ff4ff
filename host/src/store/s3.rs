//! The S3 object store (aws-sdk-s3): AWS S3 or any S3-compatible store
//! (MinIO, Garage, Ceph) through `endpoint_url` and path-style addressing.
//!
//! An object is uploaded in parts of `part_size_mib` as it is written (bounded
//! memory per open object) and completed when its segment is finished; until
//! then it is an incomplete multipart upload, which S3 never shows as an
//! object. Small objects go up in one PUT. Every request is retried with
//! exponential backoff; the pipeline holds its input while S3 is unavailable.

use super::{ObjectStore, ObjectWriter};
use crate::telemetry::metrics;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::time::Duration;

/// `[landing.s3]` in the config file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (e.g. `pinterest/`); the landing layout goes under it.
    #[serde(default)]
    pub prefix: String,
    /// Region; default from the standard AWS chain (AWS_REGION, profile), else us-east-1.
    pub region: Option<String>,
    /// For S3-compatible stores, e.g. `http://127.0.0.1:9000`. AWS_ENDPOINT_URL_S3 also works.
    pub endpoint_url: Option<String>,
    /// Address buckets as `host/bucket` rather than `bucket.host` (most S3-compatible stores need it).
    #[serde(default)]
    pub force_path_style: bool,
    /// Size of each uploaded part, in MiB (5 to 512): the memory an open object holds.
    #[serde(default = "default_part_mib")]
    pub part_size_mib: usize,
    /// Attempts per request before a write fails (and the pipeline retries its segment).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Multipart uploads older than this are aborted at start (leftovers of crashes).
    /// S3 never shows them as objects; this only frees their storage.
    #[serde(default = "default_abort_hours")]
    pub abort_incomplete_after_hours: u64,
}

fn default_part_mib() -> usize {
    8
}
fn default_attempts() -> u32 {
    6
}
fn default_abort_hours() -> u64 {
    24
}

impl S3Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("landing.s3.bucket is empty".into());
        }
        if !(5..=512).contains(&self.part_size_mib) {
            return Err(format!("landing.s3.part_size_mib must be between 5 and 512, got {}", self.part_size_mib));
        }
        if self.max_attempts == 0 {
            return Err("landing.s3.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// Cheap to clone: the client shares its connection pool.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    config: S3Config,
    /// The runtime the client was built on, which its pooled connections
    /// belong to (the one exception to [`crate::sync::block_on`]: the store is
    /// built by its caller's runtime, and a connection must not outlive it).
    rt: tokio::runtime::Handle,
    /// The resolved region and credentials chain, for [`ObjectStore::native`].
    region: String,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl S3Store {
    /// Build the client from the standard AWS chain plus the config's overrides.
    /// `rt` runs the requests; the store's methods block on it, so call them
    /// from threads outside the runtime's async workers (pipeline threads, `spawn_blocking`).
    pub async fn new(mut config: S3Config, rt: tokio::runtime::Handle) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        // A prefix is a folder: `pinterest` and `pinterest/` both put the landing under `pinterest/`.
        if !config.prefix.is_empty() && !config.prefix.ends_with('/') {
            config.prefix.push('/');
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &config.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // Retries are ours (counted, with backoff); one attempt per SDK call.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1));
        if shared.region().is_none() {
            b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if let Some(url) = &config.endpoint_url {
            b = b.endpoint_url(url);
        }
        let region = shared.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        let credentials = shared.credentials_provider();
        Ok(S3Store { client: aws_sdk_s3::Client::from_conf(b.build()), config, rt, region, credentials })
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.config.prefix)
    }

    /// Run `op` with retries and exponential backoff, counting the retries.
    fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> io::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.rt.block_on(op()) {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= self.config.max_attempts => {
                    return Err(io::Error::other(format!("S3 {what} failed after {attempt} attempts: {e}")));
                }
                Err(e) => {
                    metrics().sink_upload_retries.with_label_values(&["s3"]).inc();
                    tracing::warn!(attempt, error = %e, "S3 {what} failed; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
            }
        }
    }
}

fn dump(e: &impl std::error::Error) -> String {
    crate::telemetry::with_causes(e)
}

struct Shown<E>(E);
impl<E: std::error::Error> std::fmt::Display for Shown<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&dump(&self.0))
    }
}

impl ObjectStore for S3Store {
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(S3Object { store: self.clone(), key: self.full_key(key), buf: Vec::new(), upload: None, written: 0, finished: false }))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let full = self.full_key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let t = token.clone();
            let page = self.retry("list", || {
                { self.client.list_objects_v2().bucket(&self.config.bucket).prefix(&full).set_continuation_token(t.clone()).send() }.map_err_shown()
            })?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.config.prefix)) {
                    out.push(k.to_owned());
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        match self.get_versioned(key)? {
            Some((bytes, _)) => Ok(bytes),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no object {} in bucket {}", self.full_key(key), self.config.bucket))),
        }
    }

    fn get_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, String)>> {
        let full = self.full_key(key);
        self.retry("get", || async {
            let o = match self.client.get_object().bucket(&self.config.bucket).key(&full).send().await {
                Ok(o) => o,
                // Absent is an answer, not a failure to retry.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
                Err(e) => return Err(dump(&e)),
            };
            let etag = o.e_tag().unwrap_or_default().to_owned();
            let bytes = o.body.collect().await.map(|b| b.into_bytes().to_vec()).map_err(|e| dump(&e))?;
            Ok(Some((bytes, etag)))
        })
    }

    fn put_if(&self, key: &str, bytes: &[u8], expected: Option<&str>) -> io::Result<Option<String>> {
        let full = self.full_key(key);
        // S3 conditional writes: If-None-Match: * creates, If-Match: <etag> replaces.
        self.retry("conditional put", || async {
            let mut req = self.client.put_object().bucket(&self.config.bucket).key(&full).body(ByteStream::from(bytes.to_vec()));
            req = match expected {
                Some(etag) => req.if_match(etag),
                None => req.if_none_match("*"),
            };
            match req.send().await {
                Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
                // 412: the condition failed; 409: a concurrent conditional write won.
                Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => Ok(None),
                Err(e) => Err(dump(&e)),
            }
        })
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let full = self.full_key(key);
        self.retry("delete", || self.client.delete_object().bucket(&self.config.bucket).key(&full).send().map_err_shown()).map(|_| ())
    }

    fn clean_incomplete(&self) -> io::Result<usize> {
        let cutoff = std::time::SystemTime::now() - Duration::from_secs(self.config.abort_incomplete_after_hours * 3600);
        // Housekeeping only (incomplete uploads are never visible as objects):
        // a store that cannot list them is not a reason to refuse to start.
        let listed = self.rt.block_on(self.client.list_multipart_uploads().bucket(&self.config.bucket).prefix(&self.config.prefix).send());
        let uploads = match listed {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %dump(&e), "cannot list incomplete multipart uploads; leaving them to the bucket's lifecycle rules");
                return Ok(0);
            }
        };
        let mut aborted = 0;
        for u in uploads.uploads() {
            let old = u.initiated().and_then(|t| std::time::SystemTime::try_from(*t).ok()).is_some_and(|t| t < cutoff);
            if let (true, Some(key), Some(id)) = (old, u.key(), u.upload_id()) {
                self.retry("abort multipart upload", || {
                    self.client.abort_multipart_upload().bucket(&self.config.bucket).key(key).upload_id(id).send().map_err_shown()
                })?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.config.bucket, self.config.prefix)
    }

    fn native(&self) -> Option<super::Native> {
        // The same bucket, endpoint, addressing and credentials chain as the
        // landing; puts with `If-None-Match: *` for delta-rs' log commits.
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.config.bucket)
            .with_region(&self.region)
            .with_virtual_hosted_style_request(!self.config.force_path_style)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .with_retry(object_store::RetryConfig { max_retries: self.config.max_attempts.saturating_sub(1) as usize, ..Default::default() });
        if let Some(url) = self.config.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok()) {
            b = b.with_allow_http(url.starts_with("http://")).with_endpoint(url);
        }
        if let Some(c) = &self.credentials {
            b = b.with_credentials(std::sync::Arc::new(AwsChain(c.clone())));
        }
        let store = match b.build() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the S3 landing through object_store");
                return None;
            }
        };
        let url = url::Url::parse(&format!("s3://{}/{}", self.config.bucket, self.config.prefix)).ok()?;
        Some(super::Native { store: std::sync::Arc::new(store), url })
    }
}

/// The landing's AWS credentials chain (environment, profile, SSO, process,
/// instance role), as object_store asks for credentials.
#[derive(Debug)]
struct AwsChain(aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl object_store::CredentialProvider for AwsChain {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<std::sync::Arc<Self::Credential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let c = self.0.provide_credentials().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(std::sync::Arc::new(object_store::aws::AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        }))
    }
}

/// Turns SDK errors into messages with their whole cause chain.
trait MapErrShown<T, E> {
    fn map_err_shown(self) -> impl Future<Output = Result<T, Shown<E>>>;
}

impl<F, T, E> MapErrShown<T, E> for F
where
    F: Future<Output = Result<T, E>>,
{
    async fn map_err_shown(self) -> Result<T, Shown<E>> {
        self.await.map_err(Shown)
    }
}

struct Upload {
    id: String,
    parts: Vec<CompletedPart>,
}

struct S3Object {
    store: S3Store,
    key: String,
    buf: Vec<u8>,
    upload: Option<Upload>,
    written: u64,
    finished: bool,
}

impl S3Object {
    fn part_size(&self) -> usize {
        self.store.config.part_size_mib << 20
    }

    fn upload_part(&mut self) -> io::Result<()> {
        let s = self.store.clone();
        let (bucket, key) = (s.config.bucket.clone(), self.key.clone());
        if self.upload.is_none() {
            let created = s.retry("create multipart upload", || s.client.create_multipart_upload().bucket(&bucket).key(&key).send().map_err_shown())?;
            let id = created.upload_id().ok_or_else(|| io::Error::other("S3 gave no upload id"))?.to_owned();
            self.upload = Some(Upload { id, parts: Vec::new() });
        }
        let upload = self.upload.as_mut().expect("created above");
        let number = upload.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buf);
        let id = upload.id.clone();
        let done = s.retry("upload part", || {
            s.client.upload_part().bucket(&bucket).key(&key).upload_id(&id).part_number(number).body(ByteStream::from(body.clone())).send().map_err_shown()
        })?;
        upload.parts.push(CompletedPart::builder().part_number(number).set_e_tag(done.e_tag().map(str::to_owned)).build());
        Ok(())
    }
}

impl Write for S3Object {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= self.part_size() {
            self.upload_part()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Object {
    fn finish(mut self: Box<Self>, metadata: &[(String, String)]) -> io::Result<()> {
        let s = self.store.clone();
        let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.replace('.', "-"), v.clone())).collect();
        let (bucket, key) = (s.config.bucket.clone(), self.key.clone());
        match self.upload.take() {
            None => {
                let body = std::mem::take(&mut self.buf);
                s.retry("put", || {
                    s.client.put_object().bucket(&bucket).key(&key).set_metadata(Some(meta.clone())).body(ByteStream::from(body.clone())).send().map_err_shown()
                })?;
            }
            Some(upload) => {
                self.upload = Some(upload);
                if !self.buf.is_empty() {
                    self.upload_part()?;
                }
                let upload = self.upload.take().expect("set above");
                let parts = CompletedMultipartUpload::builder().set_parts(Some(upload.parts.clone())).build();
                s.retry("complete multipart upload", || {
                    s.client.complete_multipart_upload().bucket(&bucket).key(&key).upload_id(&upload.id).multipart_upload(parts.clone()).send().map_err_shown()
                })?;
                // Metadata is fixed when a multipart upload starts, before the
                // lineage is known: set it now with a server-side copy onto itself.
                let source = format!("{bucket}/{key}");
                s.retry("set metadata", || {
                    s.client
                        .copy_object()
                        .bucket(&bucket)
                        .key(&key)
                        .copy_source(&source)
                        .metadata_directive(MetadataDirective::Replace)
                        .set_metadata(Some(meta.clone()))
                        .send()
                        .map_err_shown()
                })?;
            }
        }
        self.finished = true;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }
}

impl Drop for S3Object {
    fn drop(&mut self) {
        // Abandoned: free the parts uploaded so far (best effort; they are invisible anyway).
        if let (false, Some(upload)) = (self.finished, self.upload.take()) {
            let (client, bucket, key) = (self.store.client.clone(), self.store.config.bucket.clone(), self.key.clone());
            self.store.rt.spawn(async move {
                let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload.id).send().await;
            });
        }
    }
}
