//! Files holding secrets (signing keys, the control-plane token), read with a check of who else
//! may read or change them.

use std::path::{Path, PathBuf};

/// The text of a secret file, with what an operator should fix about it.
#[derive(Debug)]
pub(crate) struct Secret {
    pub text: String,
    /// Set when group or others may read the file: the secret still works, but has leaked to
    /// every account on the host.
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Anyone who can write the file can choose the secret: refused outright.
    #[error("{} is writable by group or others (mode {mode:03o}); run `chmod 600` on it", path.display())]
    Writable { path: PathBuf, mode: u32 },
}

/// Reads `path`, refusing a file that group or others may write and warning about one they
/// may read.
pub(crate) fn read(path: &Path) -> Result<Secret, SecretError> {
    let read_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SecretError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            SecretError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let mut warning = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o022 != 0 {
            return Err(SecretError::Writable {
                path: path.to_path_buf(),
                mode,
            });
        }
        if mode & 0o044 != 0 {
            warning = Some(format!(
                "{} is readable by group or others (mode {mode:03o}); run `chmod 600` on it",
                path.display()
            ));
        }
    }
    Ok(Secret { text, warning })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn with_mode(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn modes_decide_between_ok_warning_and_refusal() {
        let (_d, private) = with_mode(0o600);
        let s = read(&private).unwrap();
        assert_eq!(s.text, "s3cret\n");
        assert!(s.warning.is_none());
        let (_d, readable) = with_mode(0o644);
        assert!(read(&readable).unwrap().warning.unwrap().contains("644"));
        for mode in [0o620, 0o602, 0o666] {
            let (_d, writable) = with_mode(mode);
            assert!(matches!(read(&writable), Err(SecretError::Writable { .. })));
        }
        let missing = private.with_file_name("nope");
        assert!(matches!(read(&missing), Err(SecretError::Missing { .. })));
    }
}
