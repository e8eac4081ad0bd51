//! Gateway passwords at rest: AES-256-GCM with a fresh random 96-bit nonce per
//! encryption and the gateway's row id as associated data (a ciphertext copied to
//! another row does not decrypt).
//!
//! Stored form: `v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id is
//! derived from the key, so a row names the key that sealed it; keys given as
//! "previous" still decrypt, and [`KeyRing::needs_rotation`] tells which rows to
//! re-encrypt. The predecessor's JSON form `{"encrypted","iv","authTag"}` (no
//! associated data) is still read.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::GatewayPassword;
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a configured key is unusable (the config layer adds the variable's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be valid base64 (standard alphabet, padded)")]
    NotBase64,
    #[error("must decode to 32 bytes, got {0}")]
    WrongLength(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("plaintext cannot be empty")]
    EmptyPlaintext,
    #[error("stored ciphertext is malformed")]
    Malformed,
    #[error("stored ciphertext names key {0}, which is not configured (add it to ENCRYPTION_KEYS_PREVIOUS)")]
    UnknownKey(String),
    #[error("decryption failed: wrong key, or the ciphertext was altered")]
    Decrypt,
    #[error("decrypted password is not UTF-8")]
    NotUtf8,
}

/// One AES-256 key and its id. `Debug` shows the id only.
pub struct EncryptionKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// Parses standard padded base64 that decodes to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| KeyError::NotBase64)?);
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        let digest = Sha256::new_with_prefix(b"factory-monitor key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            id,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        })
    }

    /// A new random key and its base64 text (to be stored by the caller).
    pub fn generate() -> (Self, Zeroizing<String>) {
        let key = Aes256Gcm::generate_key(OsRng);
        let text = Zeroizing::new(STANDARD.encode(key.as_slice()));
        let parsed = Self::from_bytes(key.as_slice()).expect("32 bytes");
        (parsed, text)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key (encrypts) and the previous ones (still decrypt).
#[derive(Debug)]
pub struct KeyRing {
    current: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl KeyRing {
    pub fn new(current: EncryptionKey, previous: Vec<EncryptionKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// Seals `plaintext` for the gateway row `gateway`.
    pub fn encrypt(&self, plaintext: &str, gateway: Uuid) -> Result<String, CipherError> {
        if plaintext.is_empty() {
            return Err(CipherError::EmptyPlaintext);
        }
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: gateway.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!("{VERSION}:{}:{}", self.current.id, STANDARD.encode(blob)))
    }

    /// Opens a stored value of the gateway row `gateway`.
    pub fn decrypt(&self, stored: &str, gateway: Uuid) -> Result<GatewayPassword, CipherError> {
        let plaintext = if stored.trim_start().starts_with('{') {
            self.decrypt_legacy(stored)?
        } else {
            self.decrypt_v1(stored, gateway)?
        };
        String::from_utf8(plaintext.to_vec())
            .map(GatewayPassword::new)
            .map_err(|_| CipherError::NotUtf8)
    }

    /// Whether a stored value should be re-encrypted with the current key.
    pub fn needs_rotation(&self, stored: &str) -> bool {
        match stored.split(':').collect::<Vec<_>>().as_slice() {
            [VERSION, id, _] => *id != self.current.id,
            _ => true,
        }
    }

    fn decrypt_v1(&self, stored: &str, gateway: Uuid) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CipherError::Malformed);
        };
        let key = self
            .keys()
            .find(|k| k.id == id)
            .ok_or_else(|| CipherError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(body).map_err(|_| CipherError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CipherError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: gateway.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CipherError::Decrypt)
    }

    /// The predecessor's `{"encrypted","iv","authTag"}`: base64 fields, no
    /// associated data, and no key id, so every configured key is tried.
    fn decrypt_legacy(&self, stored: &str) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Legacy {
            encrypted: String,
            iv: String,
            auth_tag: String,
        }
        let legacy: Legacy = serde_json::from_str(stored).map_err(|_| CipherError::Malformed)?;
        let decode = |s: &str| STANDARD.decode(s).ok().filter(|b| !b.is_empty());
        let (Some(mut sealed), Some(iv), Some(tag)) =
            (decode(&legacy.encrypted), decode(&legacy.iv), decode(&legacy.auth_tag))
        else {
            return Err(CipherError::Malformed);
        };
        if iv.len() != NONCE_LEN || tag.len() != TAG_LEN {
            return Err(CipherError::Malformed);
        }
        sealed.extend_from_slice(&tag);
        self.keys()
            .find_map(|key| key.cipher.decrypt(Nonce::from_slice(&iv), sealed.as_slice()).ok())
            .map(Zeroizing::new)
            .ok_or(CipherError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PREDECESSOR_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn ring() -> KeyRing {
        KeyRing::new(EncryptionKey::generate().0, vec![])
    }

    #[test]
    fn round_trips() {
        let ring = ring();
        let id = Uuid::new_v4();
        for plaintext in [
            "password123",
            "Grüße, 東京",
            "🔐🏭 pump",
            &"k".repeat(1024),
            "with spaces & symbols !@#$%^",
        ] {
            let stored = ring.encrypt(plaintext, id).unwrap();
            assert!(stored.starts_with(&format!("v1:{}:", ring.current_id())));
            assert!(!stored.contains(plaintext));
            assert_eq!(ring.decrypt(&stored, id).unwrap().expose(), plaintext);
        }
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let ring = ring();
        let id = Uuid::new_v4();
        assert_ne!(ring.encrypt("same", id).unwrap(), ring.encrypt("same", id).unwrap());
    }

    #[test]
    fn empty_plaintext_is_refused() {
        assert_eq!(ring().encrypt("", Uuid::new_v4()), Err(CipherError::EmptyPlaintext));
    }

    fn flip_byte(stored: &str, index: fn(usize) -> usize) -> String {
        let (prefix, body) = stored.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(body).unwrap();
        let i = index(blob.len());
        blob[i] ^= 0x01;
        format!("{prefix}:{}", STANDARD.encode(blob))
    }

    #[test]
    fn tampering_fails() {
        let ring = ring();
        let id = Uuid::new_v4();
        let stored = ring.encrypt("secret-password", id).unwrap();
        type BytePosition = fn(usize) -> usize;
        let positions: [(&str, BytePosition); 3] = [
            ("nonce", |_| 0),
            ("ciphertext", |_| NONCE_LEN + 1),
            ("tag", |len| len - 1),
        ];
        for (what, index) in positions {
            let tampered = flip_byte(&stored, index);
            assert_eq!(ring.decrypt(&tampered, id), Err(CipherError::Decrypt), "{what}");
        }
        assert_eq!(
            ring.decrypt(&stored, Uuid::new_v4()),
            Err(CipherError::Decrypt),
            "associated data"
        );
        assert_eq!(ring.decrypt("v1:abc", id), Err(CipherError::Malformed));
        assert_eq!(ring.decrypt("garbage", id), Err(CipherError::Malformed));
    }

    #[test]
    fn wrong_key_fails_and_names_the_missing_key() {
        let id = Uuid::new_v4();
        let stored = ring().encrypt("secret", id).unwrap();
        let other = ring();
        assert!(matches!(other.decrypt(&stored, id), Err(CipherError::UnknownKey(_))));
        // Same id, different key material (forged id): authentication fails.
        let forged = format!("v1:{}:{}", other.current_id(), stored.rsplit_once(':').unwrap().1);
        assert_eq!(other.decrypt(&forged, id), Err(CipherError::Decrypt));
    }

    #[test]
    fn previous_keys_still_decrypt_and_rotation_is_detected() {
        let (old, old_text) = EncryptionKey::generate();
        let old_ring = KeyRing::new(old, vec![]);
        let id = Uuid::new_v4();
        let stored = old_ring.encrypt("rotate-me", id).unwrap();
        let new_ring = KeyRing::new(
            EncryptionKey::generate().0,
            vec![EncryptionKey::from_base64(&old_text).unwrap()],
        );
        assert_eq!(new_ring.decrypt(&stored, id).unwrap().expose(), "rotate-me");
        assert!(new_ring.needs_rotation(&stored));
        let resealed = new_ring.encrypt("rotate-me", id).unwrap();
        assert!(!new_ring.needs_rotation(&resealed));
    }

    #[test]
    fn predecessor_test_vector_decrypts() {
        let ring = KeyRing::new(EncryptionKey::from_base64(PREDECESSOR_KEY).unwrap(), vec![]);
        let stored = r#"{"encrypted":"TIHWFbcp4J8=","iv":"AAECAwQFBgcICQoL","authTag":"MHeHCjeBfqLHl8MYLBOzKQ=="}"#;
        assert_eq!(ring.decrypt(stored, Uuid::nil()).unwrap().expose(), "admin123");
        assert!(ring.needs_rotation(stored));
        let bad_tag = stored.replace("MHeH", "NHeH");
        assert_eq!(ring.decrypt(&bad_tag, Uuid::nil()), Err(CipherError::Decrypt));
        for broken in [
            r#"{"encrypted":"TIHWFbcp4J8=","iv":"AAECAwQFBgcICQoL"}"#,
            r#"{"encrypted":"","iv":"AAECAwQFBgcICQoL","authTag":"MHeHCjeBfqLHl8MYLBOzKQ=="}"#,
        ] {
            assert_eq!(ring.decrypt(broken, Uuid::nil()), Err(CipherError::Malformed));
        }
    }

    #[test]
    fn key_parsing_errors_are_named() {
        assert_eq!(
            EncryptionKey::from_base64("not-valid-base64!!!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            EncryptionKey::from_base64(&STANDARD.encode([0u8; 16])).unwrap_err(),
            KeyError::WrongLength(16)
        );
        assert!(EncryptionKey::from_base64(PREDECESSOR_KEY).is_ok());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let (key, text) = EncryptionKey::generate();
        let shown = format!("{:?}", KeyRing::new(key, vec![]));
        assert!(!shown.contains(text.as_str()));
    }

    proptest! {
        #[test]
        fn any_non_empty_string_round_trips(plaintext in ".{1,200}") {
            let ring = ring();
            let id = Uuid::new_v4();
            let stored = ring.encrypt(&plaintext, id).unwrap();
            let opened = ring.decrypt(&stored, id).unwrap();
            prop_assert_eq!(opened.expose(), plaintext.as_str());
        }
    }
}
