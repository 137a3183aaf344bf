//! Blobs in an S3-compatible bucket (AWS S3, R2's S3 API, MinIO, Garage, s3s-fs): the core
//! signs short-lived URLs and clients move the bytes to and from the bucket directly, so a
//! large file never passes through the farm. This works on every runtime, including Spin,
//! which has no blob store of its own: signing is pure (HMAC over the request and `ctx.now_ms`).
//!
//! Design decisions (docs/ASSETS.md has the whole story):
//! - Signing is `rusty-s3`'s (sans-IO SigV4, no clock of its own when given the time): no
//!   SigV4 written here.
//! - An upload URL signs the header `x-amz-checksum-sha256` (the base64 of the blob's digest),
//!   so the bucket itself refuses bytes that do not hash to the blob's name (`BadDigest`). An
//!   object under a blob's key therefore always holds the right bytes; a client that lies in
//!   its confirmation can make a blob missing (404 for nodes), never wrong.
//! - A URL names one object and lives minutes ([`PUT_EXPIRY_S`], [`GET_EXPIRY_S`]).

use base64::Engine;
use rusty_s3::{Credentials, S3Action, UrlStyle};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long an upload URL is valid, seconds. A request must start before then (S3 checks the
/// time a request arrives, so a long upload that started in time completes).
pub const PUT_EXPIRY_S: u64 = 15 * 60;
/// How long a download URL is valid, seconds. A node that resumes later asks the farm again.
pub const GET_EXPIRY_S: u64 = 5 * 60;
/// The header an upload must carry: the base64 of the blob's SHA-256, signed into the URL.
pub const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";

/// Where the bucket is and how to reach it: the names `edgefarm serve`'s flags and the
/// `EDGEFARM_S3_*` variables of every runtime give.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The S3 endpoint, `https://s3.eu-west-1.amazonaws.com`, `https://ACCOUNT.r2.cloudflarestorage.com`,
    /// `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The region (`auto` on R2, `us-east-1` for most self-hosted servers).
    pub region: String,
    /// The bucket's name.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`; MinIO, s3s-fs) instead of virtual-host style
    /// (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Prefix of every blob's key (`blobs/` by default), so the bucket can hold other things.
    pub prefix: String,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<hidden>")
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The variables (and `edgefarm serve` environment) naming a bucket; the first three are
/// required once any is set.
pub const VARS: [&str; 7] = [
    "EDGEFARM_S3_ENDPOINT",
    "EDGEFARM_S3_BUCKET",
    "EDGEFARM_S3_ACCESS_KEY",
    "EDGEFARM_S3_SECRET_KEY",
    "EDGEFARM_S3_REGION",
    "EDGEFARM_S3_PATH_STYLE",
    "EDGEFARM_S3_PREFIX",
];

impl S3Settings {
    /// Settings from variables (`var` returns a variable's value): `None` when no
    /// `EDGEFARM_S3_*` variable is set; an error naming the variable at fault otherwise.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Arc<Bucket>>, String> {
        let get = |n: &str| {
            var(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if VARS.iter().all(|n| get(n).is_none()) {
            return Ok(None);
        }
        let need = |n: &str| get(n).ok_or_else(|| format!("{n} is not set (a bucket needs it)"));
        let path_style = match get("EDGEFARM_S3_PATH_STYLE").as_deref() {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(v) => return Err(format!("EDGEFARM_S3_PATH_STYLE: true or false, not {v:?}")),
        };
        let s = S3Settings {
            endpoint: need("EDGEFARM_S3_ENDPOINT")?,
            bucket: need("EDGEFARM_S3_BUCKET")?,
            access_key: need("EDGEFARM_S3_ACCESS_KEY")?,
            secret_key: need("EDGEFARM_S3_SECRET_KEY")?,
            region: get("EDGEFARM_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            path_style,
            prefix: get("EDGEFARM_S3_PREFIX").unwrap_or_else(|| "blobs/".into()),
        };
        Bucket::new(&s).map(|b| Some(Arc::new(b)))
    }
}

/// A bucket ready to sign for: checked settings. Built once at start; [`Bucket::new`] names
/// the setting at fault.
#[derive(Clone)]
pub struct Bucket {
    bucket: rusty_s3::Bucket,
    credentials: Credentials,
    prefix: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("url", &self.bucket.base_url().as_str())
            .field("region", &self.bucket.region())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A presigned request: what a client sends, to whom, with which headers (each must be sent
/// exactly as given: they are signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The full URL, signature in its query.
    pub url: String,
    /// Headers the request must carry.
    pub headers: BTreeMap<String, String>,
}

impl Bucket {
    /// Checks settings: an http(s) endpoint with a host and no path, a bucket name, keys, a
    /// prefix of safe characters.
    pub fn new(s: &S3Settings) -> Result<Bucket, String> {
        let endpoint = url::Url::parse(s.endpoint.trim())
            .map_err(|e| format!("EDGEFARM_S3_ENDPOINT {:?}: not a URL: {e}", s.endpoint))?;
        if !matches!(endpoint.path(), "" | "/")
            || endpoint.query().is_some()
            || !endpoint.username().is_empty()
        {
            return Err(format!(
                "EDGEFARM_S3_ENDPOINT {:?}: give the server only (scheme, host, port), no path, query or user",
                s.endpoint
            ));
        }
        let valid_name = |n: &str| {
            (3..=63).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid_name(&s.bucket) {
            return Err(format!(
                "EDGEFARM_S3_BUCKET {:?}: 3 to 63 lowercase letters, digits, '-' or '.'",
                s.bucket
            ));
        }
        if s.access_key.is_empty() || s.secret_key.is_empty() {
            return Err("EDGEFARM_S3_ACCESS_KEY and EDGEFARM_S3_SECRET_KEY must be set".into());
        }
        if !s
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
            || s.prefix.starts_with('/')
            || s.prefix.split('/').any(|p| p == "..")
        {
            return Err(format!(
                "EDGEFARM_S3_PREFIX {:?}: letters, digits, '/', '-', '_', '.'; not starting with '/'",
                s.prefix
            ));
        }
        let style = if s.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(endpoint, style, s.bucket.clone(), s.region.clone())
            .map_err(|e| format!("EDGEFARM_S3_ENDPOINT {:?}: {e}", s.endpoint))?;
        Ok(Bucket {
            bucket,
            credentials: Credentials::new(s.access_key.clone(), s.secret_key.clone()),
            prefix: s.prefix.clone(),
        })
    }

    /// The origin (`scheme://host[:port]`) of every URL signed for this bucket: what a browser
    /// page that follows them must be allowed to reach.
    pub fn origin(&self) -> String {
        self.bucket.base_url().origin().ascii_serialization()
    }

    /// The object key of a blob (`sha256` must already be checked: 64 lowercase hex digits).
    pub fn key(&self, sha256: &str) -> String {
        format!("{}{sha256}", self.prefix)
    }

    /// A URL to upload the blob `sha256` with, valid [`PUT_EXPIRY_S`] from `now_ms`. It signs
    /// [`CHECKSUM_HEADER`]: the bucket refuses a body whose SHA-256 is not `sha256`.
    pub fn put(&self, sha256: &str, now_ms: u64) -> Presigned {
        let checksum = checksum_header(sha256);
        let key = self.key(sha256);
        let mut action = self.bucket.put_object(Some(&self.credentials), &key);
        action
            .headers_mut()
            .insert(CHECKSUM_HEADER, checksum.clone());
        let url = action.sign_with_time(Duration::from_secs(PUT_EXPIRY_S), &time(now_ms));
        Presigned {
            url: url.to_string(),
            headers: BTreeMap::from([(CHECKSUM_HEADER.to_string(), checksum)]),
        }
    }

    /// A URL to download (`head`: only ask about) the blob `sha256`, valid [`GET_EXPIRY_S`]
    /// from `now_ms`. A `Range` header may be added (it is not signed).
    pub fn get(&self, sha256: &str, now_ms: u64, head: bool) -> String {
        let key = self.key(sha256);
        let expires = Duration::from_secs(GET_EXPIRY_S);
        let url = if head {
            self.bucket
                .head_object(Some(&self.credentials), &key)
                .sign_with_time(expires, &time(now_ms))
        } else {
            self.bucket
                .get_object(Some(&self.credentials), &key)
                .sign_with_time(expires, &time(now_ms))
        };
        url.to_string()
    }

    /// A URL to delete the blob `sha256` (garbage collection), valid [`GET_EXPIRY_S`].
    pub fn delete(&self, sha256: &str, now_ms: u64) -> String {
        let key = self.key(sha256);
        self.bucket
            .delete_object(Some(&self.credentials), &key)
            .sign_with_time(Duration::from_secs(GET_EXPIRY_S), &time(now_ms))
            .to_string()
    }
}

/// The value of [`CHECKSUM_HEADER`] for a blob: its digest in base64 (S3's form), from the hex
/// of its name.
pub fn checksum_header(sha256: &str) -> String {
    let digest: Vec<u8> = (0..sha256.len() / 2)
        .filter_map(|i| u8::from_str_radix(sha256.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// `now_ms` as the signer's time (the core has no clock).
fn time(now_ms: u64) -> jiff::Timestamp {
    let ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn bucket() -> Bucket {
        Bucket::new(&S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            bucket: "farm".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            path_style: true,
            prefix: "blobs/".into(),
        })
        .expect("valid settings")
    }

    #[test]
    fn the_origin_is_where_the_signed_urls_point() {
        let path_style = bucket();
        assert_eq!(path_style.origin(), "http://127.0.0.1:9000");
        assert!(path_style
            .get(H, 0, false)
            .starts_with(&path_style.origin()));
        let virtual_host = Bucket::new(&S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            region: "eu-west-1".into(),
            bucket: "farm".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            path_style: false,
            prefix: "blobs/".into(),
        })
        .expect("valid settings");
        assert_eq!(
            virtual_host.origin(),
            "https://farm.s3.eu-west-1.amazonaws.com"
        );
        let url = virtual_host.put(H, 0).url;
        assert!(
            url.starts_with(&format!("{}/", virtual_host.origin())),
            "{url}"
        );
    }

    #[test]
    fn checksum_is_base64_of_the_digest() {
        // SHA-256 of no bytes, as S3 documents it in base64.
        assert_eq!(
            checksum_header(H),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn put_signs_the_checksum_and_the_time_from_ctx() {
        // 2024-01-02T03:04:05Z
        let p = bucket().put(H, 1_704_164_645_000);
        assert!(p
            .url
            .starts_with(&format!("http://127.0.0.1:9000/farm/blobs/{H}?")));
        assert!(p.url.contains("X-Amz-Date=20240102T030405Z"), "{}", p.url);
        assert!(p.url.contains("X-Amz-Expires=900"), "{}", p.url);
        assert!(
            p.url
                .contains("X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256"),
            "{}",
            p.url
        );
        assert_eq!(p.headers[CHECKSUM_HEADER], checksum_header(H));
        // Same input, same URL: nothing but ctx decides.
        assert_eq!(p, bucket().put(H, 1_704_164_645_000));
    }

    #[test]
    fn get_is_short_lived_and_names_one_object() {
        let u = bucket().get(H, 1_704_164_645_000, false);
        assert!(u.starts_with(&format!("http://127.0.0.1:9000/farm/blobs/{H}?")));
        assert!(u.contains("X-Amz-Expires=300"), "{u}");
        assert_ne!(u, bucket().get(H, 1_704_164_645_000, true));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let ok = S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "auto".into(),
            bucket: "farm".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            path_style: true,
            prefix: String::new(),
        };
        for (s, named) in [
            (
                S3Settings {
                    endpoint: "ftp://x".into(),
                    ..ok.clone()
                },
                "EDGEFARM_S3_ENDPOINT",
            ),
            (
                S3Settings {
                    endpoint: "http://x/some/path".into(),
                    ..ok.clone()
                },
                "EDGEFARM_S3_ENDPOINT",
            ),
            (
                S3Settings {
                    bucket: "Bad_Name".into(),
                    ..ok.clone()
                },
                "EDGEFARM_S3_BUCKET",
            ),
            (
                S3Settings {
                    prefix: "../x".into(),
                    ..ok.clone()
                },
                "EDGEFARM_S3_PREFIX",
            ),
        ] {
            let e = Bucket::new(&s).expect_err("refused");
            assert!(e.contains(named), "{e}");
        }
        assert!(Bucket::new(&ok).is_ok());
        let vars = |n: &str| (n == "EDGEFARM_S3_BUCKET").then(|| "farm".to_string());
        let e = S3Settings::from_vars(vars).expect_err("incomplete");
        assert!(e.contains("EDGEFARM_S3_ENDPOINT"), "{e}");
        assert!(matches!(S3Settings::from_vars(|_| None), Ok(None)));
    }
}
