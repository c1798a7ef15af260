//! Downloading an input once: `fetch: {url, sha256}` on the file source. The body is streamed
//! to a temporary file beside the destination while it is hashed; only a verified file is
//! renamed into place, so a failed or corrupt download leaves nothing behind.

use std::io::{Read, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where to download a missing input from.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// An `https://` URL (`http://` is accepted for local servers).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub url: String,
    /// The expected SHA-256 of the file, as 64 hex digits.
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub sha256: String,
    /// The most bytes to download (default 1 GiB): a larger `Content-Length`, or a body that
    /// goes on past it, stops the download with an error and leaves nothing behind.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

impl FetchConfig {
    /// Checks the settings before anything is downloaded: an `http(s)://` URL and a SHA-256 of 64
    /// hex digits.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!(
                "fetch.url must start with https:// (got `{}`)",
                self.url
            ));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "fetch.sha256 must be 64 hex digits (got `{}`)",
                self.sha256
            ));
        }
        Ok(())
    }
}

fn http_client() -> std::result::Result<reqwest::blocking::Client, reqwest::Error> {
    // ring instead of aws-lc: no C toolchain needed at build time. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bundled_roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::blocking::Client::builder()
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(20))
        .tls_certs_merge(bundled_roots)
        .build()
}

/// Downloads `config.url` to `dest`, verifying its checksum.
pub fn fetch(config: &FetchConfig, dest: &Path) -> Result<()> {
    // A short error, then what to do on a line of its own (as cargo writes its hints).
    let fail = |what: String| {
        Error::runtime(format!(
            "{what}\nhelp: without network, download it yourself and save it as {} (sha256 {})",
            dest.display(),
            config.sha256
        ))
    };
    tracing::info!(url = %config.url, dest = %dest.display(), "downloading missing input");

    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Output {
        path: dir.to_path_buf(),
        source,
    })?;

    let client = http_client().map_err(|e| fail(format!("cannot set up HTTPS: {e}")))?;
    let mut response = client.get(&config.url).send().map_err(|e| {
        fail(format!(
            "cannot download {}: {}",
            config.url,
            crate::error::error_chain(&e)
        ))
    })?;
    if !response.status().is_success() {
        return Err(fail(format!(
            "cannot download {}: the server answered {}",
            config.url,
            response.status()
        )));
    }
    let too_large = |size: String| {
        Error::runtime(format!(
            "the download from {} is larger than fetch.max_bytes ({} bytes): {size}; nothing was saved",
            config.url, config.max_bytes
        ))
    };
    if let Some(length) = response.content_length().filter(|&l| l > config.max_bytes) {
        return Err(too_large(format!("the server announced {length} bytes")));
    }
    // Never more than announced either: a body running past its Content-Length is broken.
    let limit = response
        .content_length()
        .map_or(config.max_bytes, |l| l.min(config.max_bytes));

    let progress = indicatif::ProgressBar::with_draw_target(
        response.content_length(),
        indicatif::ProgressDrawTarget::stderr(),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message(format!(
        "downloading {}",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));

    // Named after this process, so a run killed mid-download leaves a file the next run
    // recognises as a dead process's and removes; dropped (deleted) on every error here.
    let mut temp = crate::io::atomic::temp_beside(dest)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = response
            .read(&mut buffer)
            .map_err(|e| fail(format!("the download of {} broke off: {e}", config.url)))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(too_large(format!("the body went on past {limit} bytes")));
        }
        hasher.update(&buffer[..n]);
        temp.write_all(&buffer[..n])
            .map_err(|source| Error::Output {
                path: dest.to_path_buf(),
                source,
            })?;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();

    let actual = crate::data::hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(&config.sha256) {
        // `temp` is deleted when dropped.
        return Err(Error::runtime(format!(
            "the file downloaded from {} has sha256 {actual}, but the pipeline expects {}; nothing was saved",
            config.url, config.sha256
        )));
    }
    crate::io::atomic::persist(temp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_checks_url_and_checksum_shape() {
        let ok = FetchConfig {
            url: "https://x/y".into(),
            max_bytes: default_max_bytes(),
            sha256: "ab".repeat(32),
        };
        ok.validate().unwrap();
        let bad_url = FetchConfig {
            url: "ftp://x".into(),
            max_bytes: default_max_bytes(),
            ..ok.clone()
        };
        assert!(bad_url.validate().unwrap_err().contains("https://"));
        let bad_sum = FetchConfig {
            sha256: "xyz".into(),
            ..ok
        };
        assert!(bad_sum.validate().unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(crate::data::hex(&[0xab, 0x01]), "ab01");
    }
}
