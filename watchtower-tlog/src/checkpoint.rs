//! Signed checkpoints: the log's size and root as a C2SP `tlog-checkpoint`,
//! signed as a C2SP signed note with the server's Ed25519 key.
//!
//! ```text
//! watchtower/central-1            <- origin: names the log (and the key)
//! 1234                            <- tree size
//! <base64 root>                   <- RFC 9162 root over the first `size` leaves
//!
//! — watchtower/central-1 <base64(key id ‖ Ed25519 signature)>
//! ```
//!
//! Keys are in the signed-note text forms: the signer key
//! `PRIVATE+KEY+<origin>+<id>+<base64>` stays with the server; the verifier key
//! `<origin>+<id>+<base64(0x01 ‖ public key)>` is what auditors pin.

use signed_note::{
    Note, Signer as _, StandardSigner, StandardVerifier, VerificationError, Verifier, Verifiers,
};
use tlog_tiles::Checkpoint;

use crate::Hash;

/// A verified checkpoint's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a signer key (PRIVATE+KEY+<name>+<id>+<key>)")]
    SignerKey,
    #[error("not a verifier key (<name>+<id>+<key>)")]
    VerifierKey,
    #[error("{0:?} is not a valid log origin (a key name: no spaces or '+')")]
    Origin(String),
    #[error("not a signed note")]
    Malformed,
    #[error("the checkpoint is not signed by the pinned key {0}")]
    NotSignedByPinnedKey(String),
    #[error("a signature by the pinned key {0} does not verify: the checkpoint was altered")]
    BadSignature(String),
    #[error("the signed text is not a checkpoint")]
    NotACheckpoint,
    #[error("the checkpoint is of log {found:?}, not the pinned log {expected:?}")]
    OtherLog { expected: String, found: String },
}

/// The server's side: signs tree heads.
pub struct CheckpointSigner {
    signer: StandardSigner,
    verifier_key: String,
}

impl CheckpointSigner {
    /// A new key pair for the log `origin`: `(signer key, verifier key)`.
    pub fn generate(origin: &str) -> Result<(String, String), CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::Origin(origin.to_owned()));
        }
        Ok(signed_note::generate_key(&mut rand_core::OsRng, origin))
    }

    /// Load a signer key (its text form), deriving its verifier key.
    pub fn from_signer_key(signer_key: &str) -> Result<CheckpointSigner, CheckpointError> {
        use base64::Engine as _;
        let text = signer_key.trim();
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(_id), Some(key)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CheckpointError::SignerKey);
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| CheckpointError::SignerKey)?;
        let seed: [u8; 32] = match key.split_first() {
            Some((1, seed)) => seed.try_into().map_err(|_| CheckpointError::SignerKey)?,
            _ => return Err(CheckpointError::SignerKey),
        };
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        CheckpointSigner::new(text, &signed_note::new_ed25519_verifier_key(name, &public))
    }

    /// Load a signer key (its text form) and the verifier key that goes with it.
    pub fn new(signer_key: &str, verifier_key: &str) -> Result<CheckpointSigner, CheckpointError> {
        let signer = StandardSigner::new(signer_key.trim()).map_err(|_| CheckpointError::SignerKey)?;
        let verifier =
            StandardVerifier::new(verifier_key.trim()).map_err(|_| CheckpointError::VerifierKey)?;
        if verifier.name() != signer.name() || verifier.key_id() != signer.key_id() {
            return Err(CheckpointError::VerifierKey);
        }
        Ok(CheckpointSigner {
            signer,
            verifier_key: verifier_key.trim().to_owned(),
        })
    }

    /// The log's origin line (the key's name).
    #[must_use]
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key to pin.
    #[must_use]
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The signed checkpoint of the tree of `size` leaves with `root`.
    #[must_use]
    pub fn sign(&self, size: u64, root: [u8; 32]) -> Vec<u8> {
        let checkpoint =
            Checkpoint::new(self.origin(), size, Hash(root), "").expect("the origin is a valid key name");
        let mut note = Note::new(&checkpoint.to_bytes(), &[]).expect("a checkpoint is a valid note text");
        note.add_sigs(&[&self.signer])
            .expect("the signer's name is valid");
        note.to_bytes()
    }
}

/// The auditor's side: opens checkpoints signed by one pinned key.
pub struct CheckpointVerifier {
    key: String,
    verifier: PinnedKey,
    origin: String,
}

/// The one key a verifier accepts.
struct PinnedKey(StandardVerifier);

impl Verifiers for PinnedKey {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        if name == self.0.name() && id == self.0.key_id() {
            Ok(&self.0)
        } else {
            Err(VerificationError::UnknownKey {
                name: name.to_owned(),
                id,
            })
        }
    }
}

impl CheckpointVerifier {
    /// Pin a verifier key (`<origin>+<id>+<base64>`).
    pub fn new(verifier_key: &str) -> Result<CheckpointVerifier, CheckpointError> {
        let key = verifier_key.trim().to_owned();
        let verifier = StandardVerifier::new(&key).map_err(|_| CheckpointError::VerifierKey)?;
        let origin = verifier.name().to_owned();
        Ok(CheckpointVerifier {
            key,
            verifier: PinnedKey(verifier),
            origin,
        })
    }

    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The pinned verifier key, as given.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Check the pinned key's signature and read the tree head.
    pub fn open(&self, signed: &[u8]) -> Result<TreeHead, CheckpointError> {
        let note = Note::from_bytes(signed).map_err(|_| CheckpointError::Malformed)?;
        note.verify(&self.verifier).map_err(|e| match e {
            signed_note::NoteError::InvalidSignature { .. } => {
                CheckpointError::BadSignature(self.key.clone())
            }
            _ => CheckpointError::NotSignedByPinnedKey(self.key.clone()),
        })?;
        let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::NotACheckpoint)?;
        if checkpoint.origin() != self.origin {
            return Err(CheckpointError::OtherLog {
                expected: self.origin.clone(),
                found: checkpoint.origin().to_owned(),
            });
        }
        Ok(TreeHead {
            size: checkpoint.size(),
            root: checkpoint.hash().0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(origin: &str) -> CheckpointSigner {
        let (skey, vkey) = CheckpointSigner::generate(origin).unwrap();
        CheckpointSigner::new(&skey, &vkey).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_pinned_key_and_is_c2sp_text() {
        let signer = signer("watchtower/central-1");
        let note = signer.sign(12, [7; 32]);
        let text = String::from_utf8(note.clone()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("watchtower/central-1"));
        assert_eq!(lines.next(), Some("12"));
        assert_eq!(lines.next(), Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="));
        assert_eq!(lines.next(), Some(""));
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("\u{2014} watchtower/central-1 ")
        );
        let verifier = CheckpointVerifier::new(signer.verifier_key()).unwrap();
        assert_eq!(
            verifier.open(&note).unwrap(),
            TreeHead {
                size: 12,
                root: [7; 32]
            }
        );
    }

    #[test]
    fn another_key_an_edited_size_and_another_log_are_refused() {
        let ours = signer("watchtower/central-1");
        let theirs = signer("watchtower/central-1");
        let verifier = CheckpointVerifier::new(ours.verifier_key()).unwrap();
        assert!(matches!(
            verifier.open(&theirs.sign(3, [0; 32])),
            Err(CheckpointError::NotSignedByPinnedKey(_))
        ));
        let edited = String::from_utf8(ours.sign(3, [0; 32]))
            .unwrap()
            .replacen("\n3\n", "\n2\n", 1);
        assert!(matches!(
            verifier.open(edited.as_bytes()),
            Err(CheckpointError::BadSignature(_))
        ));
        assert_eq!(verifier.open(b"garbage"), Err(CheckpointError::Malformed));
        assert!(matches!(
            CheckpointSigner::generate("has space"),
            Err(CheckpointError::Origin(_))
        ));
    }

    #[test]
    fn the_verifier_key_is_derived_from_the_signer_key() {
        let (skey, vkey) = CheckpointSigner::generate("a/log").unwrap();
        let signer = CheckpointSigner::from_signer_key(&skey).unwrap();
        assert_eq!(signer.verifier_key(), vkey);
        assert!(CheckpointSigner::from_signer_key("PRIVATE+KEY+a+1+AAAA").is_err());
    }

    #[test]
    fn a_signer_key_must_match_its_verifier_key() {
        let (skey, _) = CheckpointSigner::generate("a/log").unwrap();
        let (_, other) = CheckpointSigner::generate("a/log").unwrap();
        assert!(matches!(
            CheckpointSigner::new(&skey, &other),
            Err(CheckpointError::VerifierKey)
        ));
        assert!(matches!(
            CheckpointSigner::new("nope", &other),
            Err(CheckpointError::SignerKey)
        ));
    }
}
