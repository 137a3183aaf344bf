//! Which receivers a webhook may name. Checked when a job (or the farm config) names one, and
//! again by the native shell when it connects (a name may resolve to a private address).
//!
//! The rule against server-side request forgery: only `http`/`https`, no credentials in the
//! URL, and no loopback, private, link-local or otherwise non-public address, unless the farm
//! allows private receivers (`Settings::allow_private`, e.g. a studio whose receiver is on the
//! LAN). A host name is checked as far as it can be without a resolver (`localhost` is
//! loopback); its addresses are checked by the shell that resolves it ([`is_public`]).

use super::Settings;
use crate::core::error::{Error, Result};
use crate::wire::webhooks::Webhook;
use base64::Engine as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most webhooks one job may name.
pub const MAX_PER_JOB: usize = 4;
/// Longest webhook URL, bytes.
pub const MAX_URL: usize = 2048;

/// Whether an address is one anyone on the internet could reach (not loopback, private,
/// link-local, shared, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT, shared address space.
        || (a == 100 && (64..128).contains(&b))
        // 240.0.0.0/4: reserved.
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// The signing key of a `whsec_` secret, or why it is not one.
pub fn secret_key(secret: &str) -> std::result::Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("must start with whsec_")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "must be whsec_ followed by base64".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "must encode 24 to 64 bytes (it encodes {})",
            key.len()
        ));
    }
    Ok(key)
}

/// Checks one webhook (`field`: where it was given, e.g. `webhooks[0]`).
pub fn check(field: &str, hook: &Webhook, settings: &Settings) -> Result<()> {
    let bad = |what: &str, msg: String| Error::field(&format!("{field}.{what}"), msg);
    if hook.url.len() > MAX_URL {
        return Err(bad("url", format!("{field}.url: at most {MAX_URL} bytes")));
    }
    let url = url::Url::parse(&hook.url)
        .map_err(|e| bad("url", format!("{field}.url: not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "url",
            format!("{field}.url: only http and https receivers are allowed"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "url",
            format!(
                "{field}.url: credentials in the URL are not allowed; sign with the secret instead"
            ),
        ));
    }
    let private = match url.host() {
        None => return Err(bad("url", format!("{field}.url: the URL has no host"))),
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if private && !settings.allow_private {
        return Err(bad(
            "url",
            format!(
                "{field}.url: {} is a loopback or private address; this farm only calls public receivers (allow private ones in the farm config: serve --webhooks-allow-private)",
                url.host_str().unwrap_or_default()
            ),
        ));
    }
    secret_key(&hook.secret).map_err(|why| bad("secret", format!("{field}.secret: {why}")))?;
    Ok(())
}

/// Checks a job's webhooks (at most [`MAX_PER_JOB`], no URL twice).
pub fn check_job(hooks: &[Webhook], settings: &Settings) -> Result<()> {
    if hooks.len() > MAX_PER_JOB {
        return Err(Error::field(
            "webhooks",
            format!("webhooks: at most {MAX_PER_JOB} per job"),
        ));
    }
    for (i, hook) in hooks.iter().enumerate() {
        check(&format!("webhooks[{i}]"), hook, settings)?;
        if hooks[..i].iter().any(|h| h.url == hook.url) {
            return Err(Error::field(
                "webhooks",
                format!("webhooks[{i}]: {} is named twice", hook.url),
            ));
        }
    }
    Ok(())
}

/// A job's webhooks as its views show them: origin only, no secret.
pub fn shown(hooks: &[Webhook]) -> Vec<Webhook> {
    hooks
        .iter()
        .map(|h| Webhook {
            url: redacted(&h.url),
            secret: String::new(),
        })
        .collect()
}

/// What a job view shows of a webhook URL: its origin only (the path and query of a webhook
/// URL are often its credential).
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.into(),
            secret: format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode([7u8; 32])
            ),
        }
    }

    #[test]
    fn private_and_loopback_receivers_are_refused_by_default() {
        let strict = Settings::default();
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://172.16.5.5/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://0.0.0.0/",
        ] {
            let e = check("webhooks[0]", &hook(url), &strict).expect_err(url);
            assert!(e.to_string().contains("private"), "{url}: {e}");
        }
        let lan = Settings {
            allow_private: true,
            ..Settings::default()
        };
        assert!(check("w", &hook("http://127.0.0.1:9/x"), &lan).is_ok());
        assert!(check("w", &hook("https://hooks.example.com/a?b=c"), &strict).is_ok());
        assert!(check("w", &hook("https://93.184.216.34/"), &strict).is_ok());
    }

    #[test]
    fn schemes_credentials_and_secrets_are_checked() {
        let s = Settings::default();
        let e = check("w", &hook("ftp://example.com/"), &s).unwrap_err();
        assert!(e.to_string().contains("only http and https"), "{e}");
        let e = check("w", &hook("https://u:p@example.com/"), &s).unwrap_err();
        assert!(e.to_string().contains("credentials"), "{e}");
        let mut h = hook("https://example.com/");
        h.secret = "plain".into();
        let e = check("w", &h, &s).unwrap_err();
        assert!(e.to_string().contains("w.secret"), "{e}");
        h.secret = "whsec_c2hvcnQ=".into();
        let e = check("w", &h, &s).unwrap_err();
        assert!(e.to_string().contains("24 to 64 bytes"), "{e}");
    }

    #[test]
    fn views_show_only_the_origin() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redacted("http://10.0.0.1:8080/a"), "http://10.0.0.1:8080/…");
    }
}
