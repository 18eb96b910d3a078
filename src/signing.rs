//! Signing keys: key files, the key ring (first key signs, all verify) and HMAC signatures.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret_file::{self, SecretError};

/// Bytes of the HMAC-SHA256 output kept in a URL.
pub const SIGNATURE_BYTES: usize = 16;
const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} does not exist; `imgrelay serve` creates it, or write at least 64 hex digits into it")]
    Missing { path: PathBuf },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("cannot create key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0}")]
    Unsafe(#[source] SecretError),
}

/// One HMAC key, kept with its pre-keyed HMAC state: signing then costs a clone instead of the
/// two extra SHA-256 blocks of key setup (the rewriter signs thousands of URLs per page).
#[derive(Clone)]
pub struct Key {
    bytes: Vec<u8>,
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl Key {
    /// Parses the hex text of a key file (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Key, String> {
        let hex_text = text.trim();
        let bytes = hex::decode(hex_text).map_err(|e| format!("not hex: {e}"))?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "key has {} hex digits, at least {} needed",
                hex_text.len(),
                MIN_KEY_BYTES * 2
            ));
        }
        // A placeholder left in place, not a key: anyone could sign with it.
        if bytes.iter().all(|&b| b == 0) {
            return Err("the key is all zeros; write a random key (or delete the file and let `imgrelay serve` create one)".into());
        }
        Ok(Key::new(bytes))
    }

    fn new(bytes: Vec<u8>) -> Key {
        let keyed = match Hmac::<Sha256>::new_from_slice(&bytes) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        Key { bytes, keyed }
    }

    pub fn generate() -> Result<Key, std::io::Error> {
        let mut bytes = vec![0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Key::new(bytes))
    }

    /// Short public fingerprint, for logs and `Debug`; reveals nothing of the key.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(&self.bytes);
        hex::encode(&digest[..4])
    }

    fn mac(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.mac_parts(&[message])
    }

    /// The MAC of the concatenated `parts`, without concatenating them.
    fn mac_parts(&self, parts: &[&[u8]]) -> [u8; SIGNATURE_BYTES] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; SIGNATURE_BYTES];
        out.copy_from_slice(&full[..SIGNATURE_BYTES]);
        out
    }

    /// base64url signature of `message`.
    pub fn sign(&self, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(message.as_bytes()))
    }

    /// The key in `path`, and a warning when others may read the file.
    fn load(path: &Path) -> Result<(Key, Option<String>), KeyError> {
        let secret = secret_file::read(path).map_err(|e| match e {
            SecretError::Missing { path } => KeyError::Missing { path },
            SecretError::Read { path, source } => KeyError::Read { path, source },
            unsafe_file @ SecretError::Writable { .. } => KeyError::Unsafe(unsafe_file),
        })?;
        let key = Key::from_hex(&secret.text).map_err(|message| KeyError::Malformed {
            path: path.to_path_buf(),
            message,
        })?;
        Ok((key, secret.warning))
    }
}

/// Where the keys live (`[signing]`): the key that signs, then older keys that still verify.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFiles {
    pub signing: PathBuf,
    pub verify_only: Vec<PathBuf>,
}

/// The signing key plus older verify-only keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
    /// What an operator should fix about the key files (e.g. too open modes).
    warnings: Vec<String>,
}

impl KeyRing {
    pub fn new(signing: Key, verify_only: Vec<Key>) -> KeyRing {
        let mut keys = vec![signing];
        keys.extend(verify_only);
        KeyRing {
            keys,
            warnings: Vec::new(),
        }
    }

    /// Loads the key files; the signing key must exist. A key file that group or others may
    /// write is refused; one they may read gives a warning.
    pub fn load(files: &KeyFiles) -> Result<KeyRing, KeyError> {
        let mut warnings = Vec::new();
        let mut keys = Vec::with_capacity(1 + files.verify_only.len());
        for path in std::iter::once(&files.signing).chain(&files.verify_only) {
            let (key, warning) = Key::load(path)?;
            keys.push(key);
            warnings.extend(warning);
        }
        Ok(KeyRing { keys, warnings })
    }

    /// Problems with the key files worth telling the operator about.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Like [`KeyRing::load`], but first creates a missing signing key file with a fresh random
    /// key (mode 0600). Returns whether it was created.
    pub fn load_or_create(files: &KeyFiles) -> Result<(KeyRing, bool), KeyError> {
        let created = create_key_file(&files.signing)?;
        Ok((KeyRing::load(files)?, created))
    }

    pub fn signing_key(&self) -> &Key {
        &self.keys[0]
    }

    pub fn sign(&self, message: &str) -> String {
        self.signing_key().sign(message)
    }

    /// A tag over `parts` made with the signing key, for data this service stores outside
    /// itself (the shared cache) and must recognise as its own when it reads it back. Callers
    /// begin `parts` with a label containing a NUL byte, which no signed URL payload contains,
    /// so a tag can never pass as a URL signature.
    pub fn seal(&self, parts: &[&[u8]]) -> [u8; SIGNATURE_BYTES] {
        self.signing_key().mac_parts(parts)
    }

    /// Whether `tag` is [`KeyRing::seal`] of `parts` under any key of the ring (constant-time).
    pub fn opens(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= key.mac_parts(parts).ct_eq(tag);
        }
        ok.into()
    }

    /// Constant-time check of a base64url signature against every key of the ring.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        if given.len() != SIGNATURE_BYTES {
            return false;
        }
        // Every key is tried whatever the outcome, so timing does not reveal which key matched.
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= key.mac(message.as_bytes()).ct_eq(&given[..]);
        }
        ok.into()
    }
}

/// Creates `path` with a random key when it does not exist; true when created.
fn create_key_file(path: &Path) -> Result<bool, KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let create_err = |source| KeyError::Create {
        path: path.to_path_buf(),
        source,
    };
    match options.open(path) {
        Ok(mut file) => {
            let key = Key::generate().map_err(create_err)?;
            writeln!(file, "{}", hex::encode(&key.bytes)).map_err(create_err)?;
            file.sync_all().map_err(create_err)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(create_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::new(vec![byte; 32])
    }

    #[test]
    fn ring_verifies_with_any_key_and_signs_with_first() {
        let old = KeyRing::new(key(1), vec![]);
        let ring = KeyRing::new(key(2), vec![key(1)]);
        let sig_old = old.sign("0x0/abc");
        assert!(ring.verify("0x0/abc", &sig_old));
        assert!(ring.verify("0x0/abc", &ring.sign("0x0/abc")));
        assert!(!ring.verify("0x0/abd", &sig_old));
        assert!(!ring.verify("0x0/abc", "short"));
        assert_ne!(ring.sign("m"), old.sign("m"));
    }

    #[test]
    fn key_text_rules() {
        assert!(Key::from_hex(&format!("  {}\n", "ab".repeat(32))).is_ok());
        assert!(Key::from_hex(&"00".repeat(32)).is_err());
        assert!(Key::from_hex(&"ab".repeat(31)).is_err());
        assert!(Key::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn creates_key_file_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = KeyFiles {
            signing: dir.path().join("k"),
            verify_only: vec![],
        };
        assert!(matches!(KeyRing::load(&cfg), Err(KeyError::Missing { .. })));
        let (ring, created) = KeyRing::load_or_create(&cfg).unwrap();
        assert!(created);
        let (again, created) = KeyRing::load_or_create(&cfg).unwrap();
        assert!(!created);
        assert_eq!(ring.sign("x"), again.sign("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cfg.signing)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
