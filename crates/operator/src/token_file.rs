//! Where `stockroom up` keeps the operator token it generated: a file in the
//! data directory, readable by its owner only, which `stockroom stock` reads
//! when the token is not in its environment.

use std::path::{Path, PathBuf};

use stockroom_http_kit::{OperatorToken, TokenError};

/// The file in the data directory that holds the operator token.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// Why the kept token cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operator token in {} is not valid", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
}

/// The token file of `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(OPERATOR_TOKEN_FILE)
}

/// The token kept in `path`, if the file exists.
pub fn read(path: &Path) -> Result<Option<OperatorToken>, TokenFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => OperatorToken::parse(text.trim())
            .map(Some)
            .map_err(|source| TokenFileError::Invalid {
                path: path.to_owned(),
                source,
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `token` to `path`, readable and writable by its owner only, made
/// so from the start (never briefly readable by others); an existing file is
/// never overwritten.
pub fn write(path: &Path, token: &OperatorToken) -> Result<(), TokenFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| TokenFileError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    writeln!(file, "{}", token.expose()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_kept_token_is_its_owners_alone_and_reads_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = path_in(directory.path());
        assert!(read(&path).unwrap().is_none());
        let token = OperatorToken::generate();
        write(&path, &token).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&path).unwrap().unwrap().expose(), token.expose());
        assert!(
            write(&path, &OperatorToken::generate()).is_err(),
            "never overwritten"
        );
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(read(&path), Err(TokenFileError::Invalid { .. })));
    }
}
