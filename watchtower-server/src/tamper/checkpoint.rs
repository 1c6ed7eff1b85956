//! Signed checkpoints of the tamper-evidence log: the server's Ed25519 key signs
//! the log's size and root as a C2SP `tlog-checkpoint` note at start, at
//! intervals, at shutdown and after a retention cut-off is logged. The key (a
//! signed-note signer key, mode 0600, outside the data directory by default) is
//! created only for an empty log; its verifier key is written beside it (`.pub`)
//! for auditors to pin.

use std::path::{Path, PathBuf};

use watchtower_model::SignedCheckpoint;
use watchtower_tlog::CheckpointSigner as NoteSigner;

use crate::store::{EventStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("cannot read the checkpoint signing key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write the checkpoint signing key {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} is not a checkpoint signing key: {1}")]
    Invalid(PathBuf, watchtower_tlog::CheckpointError),
    #[error(
        "the checkpoint signing key {0} is missing but the log already holds {1} leaves: a new key would \
         sign a history nobody can tell from a forged one. Restore the key (or start on an empty data directory)"
    )]
    MissingForExistingLog(PathBuf, u64),
    #[error("the signing key {0} names log {1:?}, but log.origin is {2:?}")]
    OtherOrigin(PathBuf, String, String),
}

pub struct CheckpointSigner {
    signer: NoteSigner,
    /// Checks the published checkpoint before it is replaced.
    verifier: watchtower_tlog::CheckpointVerifier,
    /// Where each new checkpoint is also written (an offsite copy).
    publish_to: Option<PathBuf>,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("verifier_key", &self.verifier_key())
            .finish_non_exhaustive()
    }
}

/// Where the verifier key of `key_path` is written.
#[must_use]
pub fn public_key_path(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

impl CheckpointSigner {
    /// Load the key at `path`; create it (and its `.pub`) only when there is none
    /// and the log of `store` is empty.
    pub fn load(path: &Path, origin: &str, store: &EventStore) -> Result<CheckpointSigner, SignerError> {
        let signer = match std::fs::read_to_string(path) {
            Ok(text) => {
                NoteSigner::from_signer_key(&text).map_err(|e| SignerError::Invalid(path.to_owned(), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let size = store.log_head().size;
                if size > 0 {
                    return Err(SignerError::MissingForExistingLog(path.to_owned(), size));
                }
                let (skey, _) =
                    NoteSigner::generate(origin).map_err(|e| SignerError::Invalid(path.to_owned(), e))?;
                watchtower_pki::create_new_file(path, format!("{skey}\n").as_bytes(), true)
                    .map_err(|e| SignerError::Write(path.to_owned(), e))?;
                tracing::warn!(key = %path.display(), "created a new checkpoint signing key for an empty log");
                NoteSigner::from_signer_key(&skey).map_err(|e| SignerError::Invalid(path.to_owned(), e))?
            }
            Err(e) => return Err(SignerError::Read(path.to_owned(), e)),
        };
        if signer.origin() != origin {
            return Err(SignerError::OtherOrigin(
                path.to_owned(),
                signer.origin().to_owned(),
                origin.to_owned(),
            ));
        }
        let pub_path = public_key_path(path);
        if std::fs::read_to_string(&pub_path)
            .map(|s| s.trim().to_owned())
            .ok()
            .as_deref()
            != Some(signer.verifier_key())
        {
            watchtower_pki::write_file(
                &pub_path,
                format!("{}\n", signer.verifier_key()).as_bytes(),
                false,
            )
            .map_err(|e| SignerError::Write(pub_path.clone(), e))?;
        }
        let verifier = watchtower_tlog::CheckpointVerifier::new(signer.verifier_key())
            .map_err(|e| SignerError::Invalid(path.to_owned(), e))?;
        Ok(CheckpointSigner {
            signer,
            verifier,
            publish_to: None,
        })
    }

    /// Also write every new checkpoint to `path` (replacing the last one).
    #[must_use]
    pub fn publishing_to(mut self, path: Option<PathBuf>) -> CheckpointSigner {
        self.publish_to = path;
        self
    }

    /// The verifier key auditors pin (`<origin>+<id>+<base64>`).
    #[must_use]
    pub fn verifier_key(&self) -> &str {
        self.signer.verifier_key()
    }

    /// Sign the head of `store`'s log now and keep the checkpoint there.
    pub fn checkpoint(&self, store: &EventStore, reason: &str) -> Result<SignedCheckpoint, StoreError> {
        let head = store.log_head();
        let signed = SignedCheckpoint {
            note: self.signer.sign(head.size, head.root),
            time_unix_ns: crate::now_unix_ns(),
            reason: reason.to_owned(),
            size: head.size,
        };
        store.put_checkpoint(&signed)?;
        if let Some(path) = &self.publish_to {
            self.publish(path, store, head, &signed.note);
        }
        Ok(signed)
    }

    /// Replace the published checkpoint at `path` with `note`, unless the log no
    /// longer extends the one there (the data directory was rolled back or
    /// rewritten): that one is the evidence, and is kept. The log goes on without
    /// its offsite copy either way; the failure is loud.
    fn publish(&self, path: &Path, store: &EventStore, head: crate::store::LogHead, note: &[u8]) {
        if let Ok(existing) = std::fs::read(path)
            && let Ok(kept) = self.verifier.open(&existing)
        {
            let proof = if kept.size > 0 && kept.size < head.size {
                store.consistency_proof(kept.size, head.size)
            } else {
                Ok(Vec::new())
            };
            let extends = proof.map_err(|e| e.to_string()).and_then(|proof| {
                watchtower_tlog::tree::check_consistency(&proof, kept.size, kept.root, head.size, head.root)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = extends {
                tracing::error!(
                    file = %path.display(),
                    error = %e,
                    "this log does not extend the published checkpoint (was the data directory rolled back or \
                     rewritten?): the published one is kept, not replaced"
                );
                return;
            }
        }
        if let Err(e) = watchtower_pki::write_file(path, note, false) {
            tracing::error!(file = %path.display(), error = %e, "cannot publish the checkpoint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_key_is_created_once_for_an_empty_log_and_signs_verifiable_checkpoints() {
        let scratch = crate::Scratch::new("signer");
        let store = EventStore::open(&scratch.0.join("db")).unwrap();
        let path = scratch.0.join("keys/checkpoint-signing.key");
        let first = CheckpointSigner::load(&path, "watchtower/test", &store).unwrap();
        let again = CheckpointSigner::load(&path, "watchtower/test", &store).unwrap();
        assert_eq!(first.verifier_key(), again.verifier_key());
        let pinned = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(pinned.trim(), first.verifier_key());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let published = scratch.0.join("offsite/checkpoint");
        let again = again.publishing_to(Some(published.clone()));
        let signed = again.checkpoint(&store, "periodic").unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), signed.note);
        // A grown log replaces the published checkpoint; a rolled-back one does not.
        store.log_retention(1, 2).unwrap();
        store.log_retention(1, 3).unwrap();
        let grown = again.checkpoint(&store, "periodic").unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), grown.note);
        let older = EventStore::open(&scratch.0.join("db-older")).unwrap();
        older.log_retention(1, 2).unwrap();
        again.checkpoint(&older, "periodic").unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), grown.note);
        let head = watchtower_tlog::CheckpointVerifier::new(&pinned)
            .unwrap()
            .open(&signed.note)
            .unwrap();
        assert_eq!(head.size, 0);
        assert!(matches!(
            CheckpointSigner::load(&path, "watchtower/other", &store),
            Err(SignerError::OtherOrigin(..))
        ));

        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            CheckpointSigner::load(&path, "watchtower/test", &store),
            Err(SignerError::Invalid(..))
        ));
    }

    #[test]
    fn a_missing_key_with_an_existing_log_stops_the_server() {
        let scratch = crate::Scratch::new("signer-missing");
        let store = EventStore::open(&scratch.0.join("db")).unwrap();
        store.log_retention(1, 2).unwrap();
        let path = scratch.0.join("checkpoint-signing.key");
        assert!(matches!(
            CheckpointSigner::load(&path, "watchtower/test", &store),
            Err(SignerError::MissingForExistingLog(_, 1))
        ));
        assert!(!path.exists());
    }
}
