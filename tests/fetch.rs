//! `seqrec::data::fetch`: downloading, checking and extracting the MovieLens zips.
//!
//! There is no network here, so each test starts a loopback HTTP server (a thread on
//! 127.0.0.1:0 that answers a bounded number of requests, then stops by itself) serving a
//! small zip built in the test with GroupLens' layout (`ml-100k/u.data`, ...) and its `.md5`.
//! The real-data part only checks that an existing copy under `SEQREC_DATA` is reused.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use seqrec::data::fetch::{DATASETS, default_cache_dir, fetch};
use zip::write::SimpleFileOptions;

// ---------------------------------------------------------------- the loopback server

/// What the server answers for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Ok(Vec<u8>),
    /// 200 announcing the full length but sending only the first `sent` bytes, then closing.
    Truncated(Vec<u8>, usize),
}

/// A loopback HTTP/1.1 server answering at most `max_requests` requests (404 for unknown
/// paths); its thread ends after that many, or after 30 s, whichever comes first.
struct Server {
    base_url: String,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn start(routes: HashMap<String, Reply>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!(
            "http://{}/datasets/movielens",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while counter.load(Ordering::SeqCst) < max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        answer(stream, &routes);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { base_url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request head and answers it, closing the connection afterwards.
fn answer(mut stream: std::net::TcpStream, routes: &HashMap<String, Reply>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let (status, body, sent) = match routes.get(&path) {
        Some(Reply::Ok(body)) => ("200 OK", body.clone(), body.len()),
        Some(Reply::Truncated(body, sent)) => ("200 OK", body.clone(), *sent),
        None => ("404 Not Found", b"Not Found".to_vec(), 9),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(&body[..sent]);
    let _ = stream.flush();
}

// ---------------------------------------------------------------- made-up data sets

/// Small made-up files with the real data sets' names and formats.
fn fake_files(name: &str) -> Vec<(&'static str, String)> {
    let genres = [
        "unknown",
        "Action",
        "Adventure",
        "Animation",
        "Children's",
        "Comedy",
        "Crime",
        "Documentary",
        "Drama",
        "Fantasy",
        "Film-Noir",
        "Horror",
        "Musical",
        "Mystery",
        "Romance",
        "Sci-Fi",
        "Thriller",
        "War",
        "Western",
    ];
    match name {
        "ml-100k" => vec![
            (
                "u.data",
                "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250951\n".into(),
            ),
            (
                "u.item",
                format!(
                    "10|Made Up (1995)|01-Jan-1995||http://example.org|{}\n\
                     20|Also Made Up (1996)|01-Jan-1996||http://example.org|{}\n",
                    ["0"; 19].join("|"),
                    ["1"; 19].join("|")
                ),
            ),
            (
                "u.user",
                "1|24|M|artist|85711\n2|53|F|doctor|94043\n".into(),
            ),
            (
                "u.genre",
                genres
                    .iter()
                    .enumerate()
                    .map(|(i, g)| format!("{g}|{i}\n"))
                    .collect(),
            ),
            ("u.occupation", "artist\ndoctor\n".into()),
            ("README", "made-up test data\n".into()),
        ],
        "ml-1m" => vec![
            (
                "ratings.dat",
                "1::10::4::978300760\n2::10::5::978300761\n".into(),
            ),
            ("movies.dat", "10::Made Up (1995)::Comedy\n".into()),
            (
                "users.dat",
                "1::F::1::10::48067\n2::M::56::16::70072\n".into(),
            ),
            ("README", "made-up test data\n".into()),
        ],
        other => panic!("no fake files for {other}"),
    }
}

/// A deflated zip of `files` under `folder/` (GroupLens' layout), or at the top when
/// `folder` is empty.
fn make_zip(folder: &str, files: &[(&str, String)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        writer.add_directory(format!("{folder}/"), options).unwrap();
        format!("{folder}/")
    };
    for (file, contents) in files {
        writer
            .start_file(format!("{prefix}{file}"), options)
            .unwrap();
        writer.write_all(contents.as_bytes()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The hex MD5 of `bytes`, computed here with the md-5 crate directly (the library's own
/// helper is what is under test).
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Routes serving `zip` as `<name>.zip` and `md5_text` as `<name>.zip.md5`.
fn routes(name: &str, zip: Reply, md5_text: &str) -> HashMap<String, Reply> {
    HashMap::from([
        (format!("/datasets/movielens/{name}.zip"), zip),
        (
            format!("/datasets/movielens/{name}.zip.md5"),
            Reply::Ok(md5_text.as_bytes().to_vec()),
        ),
    ])
}

/// GroupLens writes its checksums in the BSD form.
fn bsd_md5_line(name: &str, bytes: &[u8]) -> String {
    format!("MD5 ({name}.zip) = {}\n", md5_hex(bytes))
}

/// A fresh, empty cache folder for one test.
fn empty_cache(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqrec-fetch-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names of everything in `dir` (hidden temporaries included), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------- the cases

#[test]
fn downloads_checks_extracts_then_reuses_without_download() {
    let cache = empty_cache("success");
    let files = fake_files("ml-100k");
    let zip = make_zip("ml-100k", &files);
    let server = Server::start(
        routes(
            "ml-100k",
            Reply::Ok(zip.clone()),
            &bsd_md5_line("ml-100k", &zip),
        ),
        4,
    );

    let folder = fetch("ml-100k", Some(&cache), Some(&server.base_url)).unwrap();
    assert_eq!(folder, cache.join("ml-100k"));
    for (file, contents) in &files {
        assert_eq!(
            &std::fs::read_to_string(folder.join(file)).unwrap(),
            contents,
            "{file}"
        );
    }
    assert_eq!(
        server.requests(),
        2,
        "one request for the .md5, one for the zip"
    );
    // Only the data set folder: the temporary extraction folder is gone.
    assert_eq!(entries(&cache), ["ml-100k"]);
    // The folder is what the loaders read.
    let dataset = seqrec::data::load::load(&folder).unwrap();
    assert_eq!(dataset.interactions.len(), 3);
    assert_eq!((dataset.users.len(), dataset.items.len()), (2, 2));

    // Second call: the complete folder is reused, the server sees no new request.
    let again = fetch("ml-100k", Some(&cache), Some(&server.base_url)).unwrap();
    assert_eq!(again, folder);
    assert_eq!(server.requests(), 2);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn ml_1m_and_a_trailing_slash_in_the_base_url() {
    let cache = empty_cache("ml1m");
    let files = fake_files("ml-1m");
    let zip = make_zip("ml-1m", &files);
    // A GNU-style checksum file this time.
    let md5_text = format!("{}  ml-1m.zip\n", md5_hex(&zip));
    let server = Server::start(routes("ml-1m", Reply::Ok(zip), &md5_text), 2);
    let base = format!("{}/", server.base_url);
    let folder = fetch("ml-1m", Some(&cache), Some(&base)).unwrap();
    assert_eq!(folder, cache.join("ml-1m"));
    for (file, contents) in &files {
        assert_eq!(
            &std::fs::read_to_string(folder.join(file)).unwrap(),
            contents,
            "{file}"
        );
    }
    assert_eq!(entries(&cache), ["ml-1m"]);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_zip_with_files_at_the_top_level_is_accepted() {
    let cache = empty_cache("flat");
    let zip = make_zip("", &fake_files("ml-100k"));
    let server = Server::start(
        routes(
            "ml-100k",
            Reply::Ok(zip.clone()),
            &bsd_md5_line("ml-100k", &zip),
        ),
        2,
    );
    let folder = fetch("ml-100k", Some(&cache), Some(&server.base_url)).unwrap();
    assert!(folder.join("u.data").is_file() && folder.join("README").is_file());
    assert_eq!(entries(&cache), ["ml-100k"]);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn wrong_checksum_is_an_error_and_leaves_nothing() {
    let cache = empty_cache("checksum");
    let zip = make_zip("ml-100k", &fake_files("ml-100k"));
    let server = Server::start(
        routes(
            "ml-100k",
            Reply::Ok(zip),
            &bsd_md5_line("ml-100k", b"other bytes"),
        ),
        2,
    );
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    assert!(error.contains("checksum mismatch"), "{error}");
    assert!(
        error.contains(&format!("{}/ml-100k.zip", server.base_url)),
        "{error}"
    );
    assert!(error.contains(&md5_hex(b"other bytes")), "{error}");
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn http_404_is_a_clear_error_naming_the_url() {
    let cache = empty_cache("404");
    // Nothing served at all: the .md5 (asked first) is missing.
    let server = Server::start(HashMap::new(), 1);
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    let md5_url = format!("{}/ml-100k.zip.md5", server.base_url);
    assert!(error.contains(&md5_url) && error.contains("404"), "{error}");

    // The .md5 is there but the zip is missing.
    let mut only_md5 = routes(
        "ml-100k",
        Reply::Ok(Vec::new()),
        "d41d8cd98f00b204e9800998ecf8427e",
    );
    only_md5.retain(|path, _| path.ends_with(".md5"));
    let server = Server::start(only_md5, 2);
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    let zip_url = format!("{}/ml-100k.zip", server.base_url);
    assert!(
        error.contains(&format!("{zip_url} failed")) && error.contains("404"),
        "{error}"
    );
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn truncated_body_is_an_error_and_leaves_nothing() {
    let cache = empty_cache("truncated");
    let zip = make_zip("ml-100k", &fake_files("ml-100k"));
    let half = zip.len() / 2;
    let md5_text = bsd_md5_line("ml-100k", &zip);
    let server = Server::start(routes("ml-100k", Reply::Truncated(zip, half), &md5_text), 2);
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("{}/ml-100k.zip", server.base_url)),
        "{error}"
    );
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn bad_or_incomplete_zip_is_an_error_and_leaves_nothing() {
    let cache = empty_cache("badzip");
    // Bytes that are not a zip, with a matching checksum.
    let garbage = b"this is not a zip archive at all".to_vec();
    let server = Server::start(
        routes(
            "ml-100k",
            Reply::Ok(garbage.clone()),
            &bsd_md5_line("ml-100k", &garbage),
        ),
        2,
    );
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not a valid zip") && error.contains("ml-100k.zip"),
        "{error}"
    );
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));

    // A valid zip that lacks u.user: extracted, found incomplete, and cleaned up.
    let mut files = fake_files("ml-100k");
    files.retain(|(file, _)| *file != "u.user");
    let zip = make_zip("ml-100k", &files);
    let server = Server::start(
        routes(
            "ml-100k",
            Reply::Ok(zip.clone()),
            &bsd_md5_line("ml-100k", &zip),
        ),
        2,
    );
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("does not hold the expected files") && error.contains("u.user"),
        "{error}"
    );
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn existing_incomplete_folder_is_left_alone() {
    let cache = empty_cache("incomplete");
    std::fs::create_dir_all(cache.join("ml-100k")).unwrap();
    std::fs::write(cache.join("ml-100k/u.data"), "1\t1\t1\t1\n").unwrap();
    let server = Server::start(HashMap::new(), 1);
    let error = fetch("ml-100k", Some(&cache), Some(&server.base_url))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a complete ml-100k copy"), "{error}");
    assert_eq!(
        server.requests(),
        0,
        "no download when the destination is occupied"
    );
    assert_eq!(entries(&cache.join("ml-100k")), ["u.data"]);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn unknown_names_and_unreachable_servers_are_errors() {
    let cache = empty_cache("unknown");
    let error = fetch("ml-20m", Some(&cache), None).unwrap_err().to_string();
    assert!(error.contains("ml-20m"), "{error}");
    for name in DATASETS {
        assert!(error.contains(name), "{error}");
    }
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let error = fetch("ml-1m", Some(&cache), Some(&base))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("{base}/ml-1m.zip.md5")), "{error}");
    assert!(entries(&cache).is_empty());
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn shared_data_layout_is_reused_without_network() {
    // The project's shared folder keeps the GroupLens files in ml-100k/grouplens/.
    let cache = empty_cache("layout");
    let folder = cache.join("ml-100k").join("grouplens");
    std::fs::create_dir_all(&folder).unwrap();
    for (file, contents) in fake_files("ml-100k") {
        std::fs::write(folder.join(file), contents).unwrap();
    }
    let unreachable = "http://127.0.0.1:9";
    assert_eq!(
        fetch("ml-100k", Some(&cache), Some(unreachable)).unwrap(),
        folder
    );
    std::fs::remove_dir_all(&cache).unwrap();

    // The same with the real data, when there is some.
    match std::env::var_os("SEQREC_DATA") {
        Some(root) => {
            let root = PathBuf::from(root);
            assert_eq!(default_cache_dir(), root);
            let found = fetch("ml-100k", None, Some(unreachable)).unwrap();
            assert!(found.starts_with(&root) && found.join("u.data").is_file());
            let dataset = seqrec::data::load::load(&found).unwrap();
            assert_eq!(dataset.interactions.len(), 100_000);
        }
        None => println!(
            "SEQREC_DATA is not set: the real ml-100k reuse check did not run (only the \
             generated copy above was checked)"
        ),
    }
}
