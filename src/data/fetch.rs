//! Fetching the MovieLens data sets from their publisher (`seqrec data fetch ml-100k`).
//!
//! `fetch` downloads GroupLens' zip (`<base>/ml-100k.zip`) and the checksum GroupLens
//! publishes beside it (`<base>/ml-100k.zip.md5`), checks the zip's MD5 against it, and
//! extracts the zip into the cache so that `<cache>/ml-100k/` holds `u.data`, `u.item`, ...
//! (or `<cache>/ml-1m/` holds `ratings.dat`, ...): the folder the loaders read.
//!
//! Nothing half-written is ever left in the cache: the zip is held in memory, extraction
//! goes to a hidden temporary folder next to the destination, and only a complete folder is
//! renamed into place (a rename within one folder is atomic). Any failure removes the
//! temporary folder. A complete folder already in the cache is reused without any download.
//!
//! No checksum is pinned in the code: the only reference is the `.md5` file fetched from the
//! same server, which catches truncated or corrupted downloads, not a dishonest server.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// The data sets `fetch` knows how to download.
pub const DATASETS: &[&str] = &["ml-100k", "ml-1m"];

/// Where GroupLens publishes the MovieLens zips; `fetch`'s `base_url` replaces it.
pub const GROUPLENS_BASE_URL: &str = "https://files.grouplens.org/datasets/movielens";

/// Refuse bodies larger than this (the real zips are about 5 MB): a wrong URL must not fill
/// the memory.
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

/// The files whose presence makes a folder a complete copy of data set `name`.
fn required_files(name: &str) -> &'static [&'static str] {
    match name {
        "ml-100k" => &["u.data", "u.item", "u.user", "u.genre", "u.occupation"],
        "ml-1m" => &["ratings.dat", "movies.dat", "users.dat"],
        _ => &[],
    }
}

/// The cache folder used when none is given: `$SEQREC_DATA` if set, else
/// `$XDG_CACHE_HOME/seqrec`, else `~/.cache/seqrec` (the system's temporary folder when
/// even `$HOME` is unset).
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("SEQREC_DATA"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// `default_cache_dir` with the three environment variables given explicitly; empty values
/// count as unset, and a relative `XDG_CACHE_HOME` is ignored as the XDG spec asks.
fn cache_dir_from(
    seqrec_data: Option<std::ffi::OsString>,
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let non_empty = |value: Option<std::ffi::OsString>| value.filter(|v| !v.is_empty());
    if let Some(data) = non_empty(seqrec_data) {
        return PathBuf::from(data);
    }
    if let Some(xdg) = non_empty(xdg_cache_home).map(PathBuf::from)
        && xdg.is_absolute()
    {
        return xdg.join("seqrec");
    }
    match non_empty(home) {
        Some(home) => PathBuf::from(home).join(".cache").join("seqrec"),
        None => std::env::temp_dir().join("seqrec"),
    }
}

/// Makes data set `name` (one of `DATASETS`) available under `cache` (default:
/// `default_cache_dir()`), downloading it from `base_url` (default: `GROUPLENS_BASE_URL`)
/// when it is not there yet, and returns the folder the loaders read.
///
/// An existing complete folder is returned as is: `<cache>/<name>/`, or
/// `<cache>/<name>/grouplens/` (the layout of the project's shared data folder).
pub fn fetch(name: &str, cache: Option<&Path>, base_url: Option<&str>) -> Result<PathBuf> {
    if !DATASETS.contains(&name) {
        return Err(Error::Invalid(format!(
            "unknown data set {name:?} to fetch: known ones are {}",
            DATASETS.join(", ")
        )));
    }
    let cache = match cache {
        Some(cache) => cache.to_path_buf(),
        None => default_cache_dir(),
    };
    if let Some(found) = existing_copy(&cache, name) {
        return Ok(found);
    }
    let destination = cache.join(name);
    make_room_for(&destination, name)?;

    let base = base_url.unwrap_or(GROUPLENS_BASE_URL).trim_end_matches('/');
    let zip_url = format!("{base}/{name}.zip");
    let md5_url = format!("{zip_url}.md5");
    let expected = parse_md5_file(&download(&md5_url, 1 << 16)?, &md5_url)?;
    let zip_bytes = download(&zip_url, MAX_DOWNLOAD_BYTES)?;
    let actual = md5_hex(&zip_bytes);
    if actual != expected {
        return Err(Error::Invalid(format!(
            "checksum mismatch for {zip_url}: its MD5 is {actual} but {md5_url} says \
             {expected} ({} bytes received); the download is corrupt or incomplete, try again",
            zip_bytes.len()
        )));
    }

    std::fs::create_dir_all(&cache).map_err(|e| Error::io(&cache, e))?;
    let staging = StagingDir::create(&cache, name)?;
    extract_zip(&zip_bytes, staging.path(), &zip_url)?;
    let extracted = find_complete_folder(staging.path(), name).ok_or_else(|| {
        Error::Invalid(format!(
            "{zip_url} does not hold the expected files: looked for {} in a {name}/ folder \
             (or at the top) of the zip",
            required_files(name).join(", ")
        ))
    })?;
    if let Err(rename_error) = std::fs::rename(&extracted, &destination) {
        // Another process may have finished the same fetch meanwhile: its copy is as good.
        if let Some(found) = existing_copy(&cache, name) {
            return Ok(found);
        }
        return Err(Error::io(&destination, rename_error));
    }
    Ok(destination)
}

/// `<cache>/<name>` or `<cache>/<name>/grouplens` when it holds every required file.
fn existing_copy(cache: &Path, name: &str) -> Option<PathBuf> {
    let folder = cache.join(name);
    [folder.clone(), folder.join("grouplens")]
        .into_iter()
        .find(|candidate| is_complete(candidate, name))
}

fn is_complete(folder: &Path, name: &str) -> bool {
    required_files(name)
        .iter()
        .all(|file| folder.join(file).is_file())
}

/// The destination must be absent (or an empty folder, which is removed) so that the final
/// rename cannot clobber, or mix with, files someone else put there.
fn make_room_for(destination: &Path, name: &str) -> Result<()> {
    if !destination.exists() {
        return Ok(());
    }
    let is_empty_dir = std::fs::read_dir(destination)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if is_empty_dir {
        return std::fs::remove_dir(destination).map_err(|e| Error::io(destination, e));
    }
    Err(Error::Invalid(format!(
        "{} exists but is not a complete {name} copy (it lacks one of {}); remove it or \
         fetch into another cache folder",
        destination.display(),
        required_files(name).join(", ")
    )))
}

/// GETs `url` into memory; a status other than 2xx, a network failure, a body larger than
/// `max_bytes` or shorter than its Content-Length is an error naming the URL.
fn download(url: &str, max_bytes: u64) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let failed = |what: String| Error::Invalid(format!("download of {url} failed: {what}"));
    let mut response = agent.get(url).call().map_err(|error| match error {
        ureq::Error::StatusCode(status) => failed(format!("HTTP status {status}")),
        other => failed(other.to_string()),
    })?;
    let announced = response.body().content_length();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(max_bytes)
        .read_to_vec()
        .map_err(|error| failed(error.to_string()))?;
    if let Some(announced) = announced
        && announced != bytes.len() as u64
    {
        return Err(failed(format!(
            "received {} bytes but the server announced {announced}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The MD5 in a checksum file: the first 32-hex-digit word, which covers the BSD form
/// (`MD5 (ml-100k.zip) = 0e33...`), the GNU form (`0e33...  ml-100k.zip`) and a bare digest.
fn parse_md5_file(bytes: &[u8], url: &str) -> Result<String> {
    String::from_utf8_lossy(bytes)
        .split(|c: char| c.is_whitespace() || c == '=' || c == '(' || c == ')')
        .find(|word| word.len() == 32 && word.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|word| word.to_ascii_lowercase())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{url} holds no MD5 digest (expected 32 hex digits, got {:?})",
                String::from_utf8_lossy(&bytes[..bytes.len().min(100)])
            ))
        })
}

/// The MD5 of `bytes` in lower-case hex.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Extracts every file of the zip under `into`, refusing entries whose names would escape
/// it (absolute paths, `..`). Symbolic links are skipped: the data sets have none.
fn extract_zip(zip_bytes: &[u8], into: &Path, url: &str) -> Result<()> {
    let bad_zip = |what: String| Error::Invalid(format!("{url} is not a valid zip: {what}"));
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| bad_zip(e.to_string()))?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad_zip(e.to_string()))?;
        let Some(relative) = entry.enclosed_name() else {
            return Err(bad_zip(format!(
                "entry {index} has an unsafe name ({:?})",
                entry.name().unwrap_or_default()
            )));
        };
        let target = into.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        if entry.is_symlink() {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut contents = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut contents)
            .map_err(|e| bad_zip(format!("entry {}: {e}", relative.display())))?;
        std::fs::write(&target, &contents).map_err(|e| Error::io(&target, e))?;
    }
    Ok(())
}

/// Where the extracted data set lies: the zip's `<name>/` folder (GroupLens' layout) or,
/// failing that, its top level.
fn find_complete_folder(extracted: &Path, name: &str) -> Option<PathBuf> {
    [extracted.join(name), extracted.to_path_buf()]
        .into_iter()
        .find(|candidate| is_complete(candidate, name))
}

/// A hidden temporary folder in the cache, removed with all it holds when dropped: after
/// a successful rename only leftovers (README, ...) outside the data set folder remain in it.
struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    fn create(cache: &Path, name: &str) -> Result<Self> {
        // The process id and a counter keep concurrent fetches (threads or processes) apart.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cache.join(format!(".{name}.partial-{}-{unique}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(StagingDir { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        // Best effort: a failure to clean up must not hide the error being returned.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_dir_from(some("/data"), some("/xdg"), some("/home/u")),
            PathBuf::from("/data")
        );
        assert_eq!(
            cache_dir_from(None, some("/xdg"), some("/home/u")),
            PathBuf::from("/xdg/seqrec")
        );
        assert_eq!(
            cache_dir_from(some(""), some("relative"), some("/home/u")),
            PathBuf::from("/home/u/.cache/seqrec")
        );
        assert_eq!(
            cache_dir_from(None, None, None),
            std::env::temp_dir().join("seqrec")
        );
    }

    #[test]
    fn md5_of_known_strings_and_checksum_file_forms() {
        // RFC 1321 test vectors.
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        let digest = "0123456789abcdef0123456789ABCDEF";
        let lower = digest.to_ascii_lowercase();
        for text in [
            format!("MD5 (ml-100k.zip) = {digest}\n"),
            format!("{digest}  ml-100k.zip\n"),
            digest.to_string(),
        ] {
            assert_eq!(parse_md5_file(text.as_bytes(), "u").unwrap(), lower);
        }
        let error = parse_md5_file(b"<html>Not Found</html>", "http://x/a.md5").unwrap_err();
        assert!(error.to_string().contains("http://x/a.md5"), "{error}");
    }

    #[test]
    fn unknown_data_set_is_an_error_listing_the_known_ones() {
        let error = fetch(
            "ml-20m",
            Some(Path::new("/nonexistent")),
            Some("http://127.0.0.1:9"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("ml-20m") && error.contains("ml-100k, ml-1m"),
            "{error}"
        );
    }
}
