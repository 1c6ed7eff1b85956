//! Signed checkpoints of the tamper-evidence log: the server's Ed25519 key signs
//! (size, root, time, reason, retention cut-off) at intervals, at shutdown and
//! before retention removes anything. The key is created on first start (PKCS#8,
//! mode 0600) with its public half beside it (`.pub`, hex) for auditors to pin.

use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use watchtower_proto::hex;
use watchtower_proto::pb::{Checkpoint, SignedCheckpoint};

use crate::store::{EventStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("cannot read the checkpoint signing key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write the checkpoint signing key {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} is not an Ed25519 PKCS#8 key: {1}")]
    Invalid(PathBuf, String),
}

pub struct CheckpointSigner {
    key: Ed25519KeyPair,
    origin: String,
}

/// Where the public key of `key_path` is written.
#[must_use]
pub fn public_key_path(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

impl CheckpointSigner {
    /// Load the key at `path`, or create it (and its `.pub`) when there is none.
    pub fn load_or_create(path: &Path) -> Result<CheckpointSigner, SignerError> {
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|e| SignerError::Invalid(path.to_owned(), e.to_string()))?;
                watchtower_pki::write_file(path, doc.as_ref(), true)
                    .map_err(|e| SignerError::Write(path.to_owned(), e))?;
                tracing::warn!(key = %path.display(), "created a new checkpoint signing key");
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(SignerError::Read(path.to_owned(), e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| SignerError::Invalid(path.to_owned(), e.to_string()))?;
        let public = hex(key.public_key().as_ref());
        let pub_path = public_key_path(path);
        if std::fs::read_to_string(&pub_path)
            .map(|s| s.trim().to_owned())
            .ok()
            != Some(public.clone())
        {
            watchtower_pki::write_file(&pub_path, format!("{public}\n").as_bytes(), false)
                .map_err(|e| SignerError::Write(pub_path.clone(), e))?;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let origin = format!("watchtower/{}", &hex(digest.as_ref())[..16]);
        Ok(CheckpointSigner { key, origin })
    }

    #[must_use]
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    #[must_use]
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            ..checkpoint
        };
        SignedCheckpoint {
            signature: self.key.sign(checkpoint.note().as_bytes()).as_ref().to_vec(),
            public_key: self.public_key().to_vec(),
            checkpoint: Some(checkpoint),
        }
    }

    /// Sign the head of `store`'s log now and keep the checkpoint there.
    /// `retention_cutoff_unix_ns` announces a removal before it happens.
    pub fn checkpoint(
        &self,
        store: &EventStore,
        reason: &str,
        retention_cutoff_unix_ns: u64,
    ) -> Result<SignedCheckpoint, StoreError> {
        let (size, root) = store.log_head();
        let signed = self.sign(Checkpoint {
            origin: String::new(),
            size,
            root: root.to_vec(),
            time_unix_ns: crate::now_unix_ns(),
            reason: reason.to_owned(),
            retention_cutoff_unix_ns,
        });
        store.put_checkpoint(&signed)?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_key_is_created_once_and_signs_verifiable_checkpoints() {
        let scratch = crate::Scratch::new("signer");
        let dir = scratch.0.clone();
        let path = dir.join("checkpoint-signing.key");
        let first = CheckpointSigner::load_or_create(&path).unwrap();
        let again = CheckpointSigner::load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        let pinned = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(pinned.trim(), hex(first.public_key()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let signed = again.sign(Checkpoint {
            size: 3,
            root: vec![7; 32],
            reason: "periodic".into(),
            ..Checkpoint::default()
        });
        let key = watchtower_proto::unhex(&pinned).unwrap();
        let checkpoint = signed.verify(Some(&key)).unwrap();
        assert!(checkpoint.origin.starts_with("watchtower/"));
        assert_eq!(checkpoint.size, 3);

        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            CheckpointSigner::load_or_create(&path),
            Err(SignerError::Invalid(..))
        ));
    }
}
