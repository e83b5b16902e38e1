//! Development secrets: generated once into a git-ignored folder so the one-process runner
//! starts with no setup, and reused on every later start (sessions survive restarts).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::secret::{SecretKey, SecretKeyError};
use crate::token::{KeyError, SigningKeys, TokenSettings, generate_signing_key_pem};

/// File holding the PKCS#8 PEM signing key.
pub const SIGNING_FILE: &str = "signing.pem";
/// File holding the base64 `AUTH_SECRET_KEY`.
pub const SECRET_FILE: &str = "secret.key";

/// The development signing key and secret key.
#[derive(Clone)]
pub struct DevSecrets {
    /// PEM text, as `AUTH_SIGNING_KEYS` would hold it.
    pub signing_pem: String,
    /// The server secret, as `AUTH_SECRET_KEY` would hold it.
    pub secret_key: SecretKey,
}

impl std::fmt::Debug for DevSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevSecrets(<redacted>)")
    }
}

/// Why the development secrets could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum DevSecretsError {
    /// Reading, creating or writing a file failed.
    #[error("dev secrets at {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `signing.pem` exists but holds no usable key.
    #[error("dev signing key {path}: {source}")]
    Key {
        /// The file concerned.
        path: PathBuf,
        /// Why the key was refused.
        source: KeyError,
    },
    /// `secret.key` exists but is not a 32-byte base64 key.
    #[error("dev secret key {path}: {source}")]
    Secret {
        /// The file concerned.
        path: PathBuf,
        /// Why the key was refused.
        source: SecretKeyError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DevSecretsError + '_ {
    move |source| DevSecretsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `signing.pem` and `secret.key` from `dir`, creating the folder (0700) and each missing
/// file (0600) first.
pub fn load_or_generate(dir: &Path) -> Result<DevSecrets, DevSecretsError> {
    create_private_dir(dir)?;
    let signing_path = dir.join(SIGNING_FILE);
    let signing_pem = read_or_create(&signing_path, generate_signing_key_pem)?;
    SigningKeys::from_pem(&signing_pem, TokenSettings::default()).map_err(|source| {
        DevSecretsError::Key {
            path: signing_path.clone(),
            source,
        }
    })?;
    let secret_path = dir.join(SECRET_FILE);
    let secret_text = read_or_create(&secret_path, || {
        format!("{}\n", SecretKey::generate().to_base64())
    })?;
    let secret_key =
        SecretKey::from_base64(&secret_text).map_err(|source| DevSecretsError::Secret {
            path: secret_path.clone(),
            source,
        })?;
    Ok(DevSecrets {
        signing_pem,
        secret_key,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), DevSecretsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err(dir))
}

/// Returns the file's text, or writes `make()` there first. The new content goes to a private
/// temporary file that is then hard-linked into place: linking fails if the name exists, so two
/// processes starting at once agree on one key, and nobody ever reads a half-written file.
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, DevSecretsError> {
    match fs::read_to_string(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let content = make();
    let written = write_private(&tmp, &content).and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    });
    // Remove the temporary name whatever happened; the linked name keeps the data.
    let _ = fs::remove_file(&tmp);
    written.map_err(io_err(path))?;
    fs::read_to_string(path).map_err(io_err(path))
}

fn write_private(path: &Path, content: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir() -> TempDir {
        TempDir(std::env::temp_dir().join(format!("auth-dev-secrets-{}", uuid::Uuid::new_v4())))
    }

    #[test]
    fn created_once_then_reused() {
        let root = temp_dir();
        let dir = root.0.join("nested").join("dev-secrets");
        let first = load_or_generate(&dir).expect("first");
        let second = load_or_generate(&dir).expect("second");
        assert_eq!(first.signing_pem, second.signing_pem);
        assert_eq!(first.secret_key, second.secret_key);
        assert_eq!(
            fs::read_to_string(dir.join(SIGNING_FILE)).expect("signing file"),
            first.signing_pem
        );
        SigningKeys::from_pem(&second.signing_pem, TokenSettings::default()).expect("usable key");
        // Only the two secrets remain: no temporary file is left behind.
        let mut names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(names, [SECRET_FILE, SIGNING_FILE]);
    }

    #[cfg(unix)]
    #[test]
    fn folder_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = temp_dir();
        let dir = root.0.join("dev-secrets");
        load_or_generate(&dir).expect("generate");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(SIGNING_FILE)), 0o600);
        assert_eq!(mode(&dir.join(SECRET_FILE)), 0o600);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_silently_replaced() {
        let root = temp_dir();
        let dir = root.0.join("dev-secrets");
        load_or_generate(&dir).expect("generate");
        fs::write(dir.join(SECRET_FILE), "short\n").expect("overwrite");
        assert!(matches!(
            load_or_generate(&dir),
            Err(DevSecretsError::Secret { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.join(SECRET_FILE)).expect("kept"),
            "short\n"
        );
    }
}
