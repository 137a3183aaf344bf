//! Signing an event the Standard Webhooks way: `webhook-signature: v1,<base64 HMAC-SHA256>`
//! over `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the bytes of the `whsec_` secret.
//! Pure (the timestamp is given), so every runtime signs the same in the core.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` value, or `None` when the secret is not a valid `whsec_` secret
/// (never stored: secrets are checked when given).
pub fn signature(secret: &str, msg_id: &str, timestamp_s: u64, body: &str) -> Option<String> {
    let key = super::target::secret_key(secret).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp_s}.").as_bytes());
    mac.update(body.as_bytes());
    let sig = mac.finalize().into_bytes();
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries' test
    /// vector): the same secret, id, timestamp and body give the same signature.
    #[test]
    fn matches_the_standard_webhooks_example() {
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn another_secret_or_body_gives_another_signature() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let a = signature(secret, "msg_1", 1, "{}");
        assert_ne!(a, signature(secret, "msg_1", 1, "{ }"));
        assert_ne!(a, signature(secret, "msg_1", 2, "{}"));
        assert_ne!(
            a,
            signature("whsec_AfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 1, "{}")
        );
        assert_eq!(signature("nope", "msg_1", 1, "{}"), None);
    }
}
