//! Secrets: encryption at rest (AES-256-GCM keyed from `MASTER_KEY`), API-key material,
//! constant-time comparison and key derivation.
//!
//! Nothing here logs or formats a secret; [`SecretBox`]'s `Debug` is redacted.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Version byte at the front of every sealed value, so the cipher or key can rotate later.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Errors of sealing and opening secrets.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext was altered, belongs to another record, or was sealed with another key.
    #[error("secret cannot be decrypted with the configured master key")]
    Open,
    /// The sealed value has an unknown format.
    #[error("sealed secret has an unknown format")]
    Format,
    /// Encryption failed (never expected with a valid key).
    #[error("secret cannot be encrypted")]
    Seal,
}

/// Authenticated encryption of tenant secrets at rest.
///
/// Every sealed value binds associated data (the owning record and purpose), so a
/// ciphertext copied into another tenant's row does not decrypt.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// Builds the box from the configured master key (any length; a 256-bit key is derived).
    pub fn from_master_key(master_key: &[u8]) -> Self {
        let key = derive_key(master_key, b"stateset-voice/secret-box/v1");
        // A 32-byte key is always a valid AES-256 key.
        let cipher = match Aes256Gcm::new_from_slice(&key) {
            Ok(c) => c,
            Err(_) => unreachable!("derived key is 32 bytes"),
        };
        Self { cipher }
    }

    /// Encrypts `plaintext`, binding it to `aad`.
    pub fn seal(&self, plaintext: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value sealed by [`SecretBox::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<String, CryptoError> {
        let (version, rest) = sealed.split_first().ok_or(CryptoError::Format)?;
        if *version != SEALED_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Format);
        }
        let (nonce_bytes, ct) = rest.split_at(NONCE_LEN);
        let nonce_arr: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| CryptoError::Format)?;
        let pt = self
            .cipher
            .decrypt(
                &Nonce::from(nonce_arr),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Format)
    }
}

/// Derives a 256-bit key for one purpose from a master secret (HMAC-SHA256 as a PRF).
pub fn derive_key(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256>>::new_from_slice(master) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    };
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two byte strings (length may leak, content does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// A hint safe to show for a secret: its last four characters.
pub fn secret_hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Prefix of every tenant API key secret.
pub const API_KEY_PREFIX: &str = "svk_";
/// Number of leading characters of a key kept visible (and stored) as its prefix.
pub const API_KEY_VISIBLE: usize = 12;

/// Freshly generated API-key material: the secret is shown once, the hash is stored.
pub struct NewApiKeySecret {
    /// The full secret, returned to the caller exactly once.
    pub secret: String,
    /// The visible prefix stored with the key (e.g. `svk_3fa9c1d2`).
    pub prefix: String,
    /// Hex SHA-256 of the secret, the only form stored.
    pub hash: String,
}

impl std::fmt::Debug for NewApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKeySecret")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a random 256-bit API key.
pub fn generate_api_key() -> NewApiKeySecret {
    let bytes: [u8; 32] = rand::random();
    let secret = format!("{API_KEY_PREFIX}{}", hex(&bytes));
    let prefix = secret[..API_KEY_VISIBLE].to_owned();
    let hash = hash_api_key(&secret);
    NewApiKeySecret {
        secret,
        prefix,
        hash,
    }
}

/// Prefix of every tenant signing secret (event webhooks, webhook tools).
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";

/// Generates a random 256-bit signing secret (`whsec_` and 64 hex digits). The HMAC key is
/// the whole string's UTF-8 bytes.
pub fn generate_signing_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SIGNING_SECRET_PREFIX}{}", hex(&bytes))
}

/// The stored form of an API key secret. Keys carry 256 bits of entropy, so a plain
/// SHA-256 is the right hash (a slow password hash would only cost latency).
pub fn hash_api_key(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let sb = SecretBox::from_master_key(b"master key for tests");
        let sealed = sb
            .seal("auth-token-1234", "tenant:ten_a/twilio")
            .expect("seal");
        assert!(!sealed.windows(4).any(|w| w == b"1234"));
        assert_eq!(
            sb.open(&sealed, "tenant:ten_a/twilio").expect("open"),
            "auth-token-1234"
        );
        assert!(matches!(
            sb.open(&sealed, "tenant:ten_b/twilio"),
            Err(CryptoError::Open)
        ));
        let other = SecretBox::from_master_key(b"another key");
        assert!(matches!(
            other.open(&sealed, "tenant:ten_a/twilio"),
            Err(CryptoError::Open)
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sb.open(&tampered, "tenant:ten_a/twilio").is_err());
        assert!(matches!(sb.open(&[], "x"), Err(CryptoError::Format)));
    }

    #[test]
    fn api_keys_are_random_and_hashed() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(API_KEY_PREFIX));
        assert_eq!(a.prefix.len(), API_KEY_VISIBLE);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_api_key(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn hints_and_constant_time_eq() {
        assert_eq!(secret_hint("abcdef123456"), "…3456");
        assert_eq!(secret_hint("ab"), "…ab");
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"diff"));
        assert!(!ct_eq(b"same", b"samesame"));
        assert_eq!(
            sha256_hex(b"{}"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
