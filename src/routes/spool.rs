//! Lists too large to keep in memory, kept on disk: one copy per version, so that the whole
//! list at a million customers is read from the database once per change, not once per
//! download.
//!
//! A streamed list's `ETag` names the data's change number, the query, the view and the
//! encoding, so a file named after it holds exactly the body any request with that tag gets.
//! The second download of the same version writes the file as it streams (the first only
//! streams: under a stream of writes most versions are downloaded once, and copying each to
//! disk would cost more than it saves); later ones are sent from it. The files live in
//! `<database>.lists/`, readable by the server's user alone, at most [`KEPT`] of them; the
//! folder is emptied at start-up, and a copy left by a download that did not finish is
//! removed. They hold what the list sends (never a password or its hash).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Copies kept at most (each a whole list, or its gzip copy).
pub const KEPT: usize = 4;
/// Versions whose downloads are counted at most; past that the counts start over.
const COUNTED: usize = 1024;

/// A finished copy.
#[derive(Debug, Clone)]
pub struct Copy {
    pub path: PathBuf,
    /// The list's `X-Total-Count`.
    pub total: u64,
    /// Which file it is: a copy replaced or rewritten behind the server's back, even with
    /// the same length, is another file or has another modification time.
    pub file: FileId,
}

/// A file's device, inode, length (the copy's `Content-Length`) and modification time
/// (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub modified: i128,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// As named in the header to the server in front: `dev ino len modified`.
    pub fn named(&self) -> String {
        format!("{} {} {} {}", self.dev, self.ino, self.len, self.modified)
    }

    /// Reads [`FileId::named`] back, with the path after it.
    pub fn parse_named(text: &str) -> Option<(FileId, &str)> {
        let mut parts = text.splitn(5, ' ');
        let id = FileId {
            dev: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
            len: parts.next()?.parse().ok()?,
            modified: parts.next()?.parse().ok()?,
        };
        Some((id, parts.next()?))
    }
}

/// The folder of copies (one per server), and what is in it.
pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    asked: HashMap<String, u32>,
    writing: HashSet<String>,
    /// Finished copies, oldest first: the query and encoding they are for, their tag.
    ready: Vec<(String, String, Copy)>,
}

impl Spool {
    /// The folder beside the database file `db`, made (owner only) if missing; copies left
    /// by servers no longer running are removed. `None` (lists are then always streamed from
    /// the database) when it cannot be used: not a folder of its own (a symbolic link, a
    /// file), or not made.
    pub fn open(db: &Path) -> Option<Arc<Spool>> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lists");
        let dir = PathBuf::from(name);
        let refuse = |why: String| {
            log::warn!(
                "lists too large for memory will be read from the database for every download: \
                 {}: {why}",
                dir.display()
            );
            None
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if !meta.file_type().is_dir() => {
                return refuse("is not a folder (a symbolic link or a file)".into())
            }
            Ok(meta) => {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    let owner_only = std::fs::Permissions::from_mode(0o700);
                    if let Err(error) = std::fs::set_permissions(&dir, owner_only) {
                        return refuse(format!(
                            "could not make it readable by its owner alone: {error}"
                        ));
                    }
                }
            }
            Err(_) => {
                let made = std::fs::DirBuilder::new().mode_owner_only().create(&dir);
                if let Err(error) = made {
                    return refuse(format!("could not make it: {error}"));
                }
            }
        }
        // Copies are named `<pid>-<tag>.list` (`.part` while written): a second server on the
        // same file keeps its own, and a server that is gone leaves its copies to the next.
        let own = std::process::id();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.ends_with(".list") || name.ends_with(".part");
                let writer = name
                    .split('-')
                    .next()
                    .and_then(|pid| pid.parse::<u32>().ok());
                let alive = writer
                    .is_some_and(|pid| pid != own && Path::new(&format!("/proc/{pid}")).exists());
                if ours && writer.is_some() && !alive {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Some(Arc::new(Spool {
            dir,
            state: Mutex::default(),
        }))
    }

    /// The finished copy for `etag`, if there is one and it is still the file written (a
    /// regular file of its length): one removed or changed behind the server's back is
    /// forgotten, and the list streamed again.
    pub fn usable(&self, etag: &str) -> Option<Copy> {
        let copy = self.ready(etag)?;
        let intact = self.folder_is_ours()
            && std::fs::symlink_metadata(&copy.path)
                .is_ok_and(|meta| meta.file_type().is_file() && FileId::of(&meta) == copy.file);
        if intact {
            return Some(copy);
        }
        log::warn!(
            "a copy of a list was removed or changed behind the server's back: {}; the list \
             is read from the database again",
            copy.path.display()
        );
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.ready.retain(|(_, tag, _)| tag != etag);
        None
    }

    /// Whether the folder is still a folder of its own (not swapped for a link or a file
    /// while the server runs), made owner-only again if someone opened it to others.
    fn folder_is_ours(&self) -> bool {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.file_type().is_dir() => {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    let owner_only = std::fs::Permissions::from_mode(0o700);
                    if std::fs::set_permissions(&self.dir, owner_only).is_err() {
                        return false;
                    }
                }
                true
            }
            _ => {
                log::warn!(
                    "{} is no longer a folder of its own: lists are read from the database",
                    self.dir.display()
                );
                false
            }
        }
    }

    /// The finished copy for `etag`, if there is one.
    pub fn ready(&self, etag: &str) -> Option<Copy> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .ready
            .iter()
            .find(|(_, tag, _)| tag == etag)
            .map(|(_, _, copy)| copy.clone())
    }

    /// A writer for `etag`'s copy, when this version was downloaded before and nobody is
    /// writing it; `slot` names the query and encoding, whose older copy it replaces.
    pub fn claim(self: &Arc<Self>, etag: &str, slot: String) -> Option<Writer> {
        if !self.folder_is_ours() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.ready.iter().any(|(_, tag, _)| tag == etag) || state.writing.contains(etag) {
            return None;
        }
        if state.asked.len() >= COUNTED {
            state.asked.clear();
        }
        let asked = state.asked.entry(etag.to_owned()).or_insert(0);
        *asked += 1;
        if *asked < 2 {
            return None;
        }
        let name: String = etag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let pid = std::process::id();
        let path = self.dir.join(format!("{pid}-{name}.list"));
        let temp = self.dir.join(format!("{pid}-{name}.part"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_owner_only()
            .open(&temp)
            .ok()?;
        state.writing.insert(etag.to_owned());
        Some(Writer {
            spool: Arc::clone(self),
            etag: etag.to_owned(),
            slot,
            path,
            temp,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            size: 0,
        })
    }

    fn finished(&self, writer: &Writer, total: u64, file: FileId) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.writing.remove(&writer.etag);
        let copy = Copy {
            path: writer.path.clone(),
            total,
            file,
        };
        // The older copy of the same query goes, and the oldest past the bound.
        let mut gone = Vec::new();
        state.ready.retain(|(slot, _, old)| {
            let keep = *slot != writer.slot;
            if !keep {
                gone.push(old.path.clone());
            }
            keep
        });
        state
            .ready
            .push((writer.slot.clone(), writer.etag.clone(), copy));
        while state.ready.len() > KEPT {
            let (_, _, old) = state.ready.remove(0);
            gone.push(old.path);
        }
        drop(state);
        // A download reading one of them keeps its open file.
        for path in gone {
            let _ = std::fs::remove_file(path);
        }
    }

    fn abandoned(&self, etag: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.writing.remove(etag);
    }
}

/// A copy being written as its list streams.
pub struct Writer {
    spool: Arc<Spool>,
    etag: String,
    slot: String,
    path: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl Writer {
    /// Adds a piece of the body; a failure abandons the copy (the download goes on).
    pub fn write(&mut self, piece: &[u8]) {
        let written = self.file.as_mut().map(|file| file.write_all(piece));
        match written {
            Some(Ok(())) => self.size += piece.len() as u64,
            Some(Err(error)) => {
                log::warn!("could not keep a copy of a list on disk: {error}");
                self.file = None;
            }
            None => {}
        }
    }

    /// The body is whole: the copy is kept.
    pub fn finish(mut self, total: u64) {
        let Some(file) = self.file.take() else {
            return;
        };
        let done = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.metadata())
            .and_then(|meta| {
                std::fs::rename(&self.temp, &self.path)?;
                Ok(FileId::of(&meta))
            });
        match done {
            Ok(file) if file.len == self.size => self.spool.finished(&self, total, file),
            Ok(_) => log::warn!("could not keep a copy of a list on disk: its length changed"),
            Err(error) => log::warn!("could not keep a copy of a list on disk: {error}"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Not finished (or finished): the temporary file goes either way.
        let _ = std::fs::remove_file(&self.temp);
        self.spool.abandoned(&self.etag);
    }
}

/// Opens a copy to send it: the regular file itself (never through a symbolic link, never
/// a FIFO or a device, which could hang the reader), of the length written.
pub fn open_checked(path: &Path, expected: &FileId) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || FileId::of(&meta) != *expected {
        return Err(std::io::Error::other(format!(
            "{} is no longer the copy written ({} bytes)",
            path.display(),
            expected.len
        )));
    }
    Ok(file)
}

/// [`open_checked`] for a finished copy.
pub fn open_copy(copy: &Copy) -> std::io::Result<File> {
    open_checked(&copy.path, &copy.file)
}

/// Owner-only modes for what the spool makes.
trait OwnerOnly {
    fn mode_owner_only(&mut self) -> &mut Self;
}

impl OwnerOnly for std::fs::DirBuilder {
    fn mode_owner_only(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, 0o700)
    }
}

impl OwnerOnly for std::fs::OpenOptions {
    fn mode_owner_only(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_download_of_a_version_writes_its_copy_and_a_newer_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("shop.db")).unwrap();
        assert!(
            spool.claim("\"s1\"", "all".into()).is_none(),
            "first: stream only"
        );
        let mut writer = spool.claim("\"s1\"", "all".into()).expect("second: copy");
        assert!(spool.claim("\"s1\"", "all".into()).is_none(), "one writer");
        writer.write(b"[1,2,");
        writer.write(b"3]");
        assert!(spool.ready("\"s1\"").is_none(), "not before it is whole");
        writer.finish(3);
        let copy = spool.ready("\"s1\"").unwrap();
        assert_eq!(std::fs::read(&copy.path).unwrap(), b"[1,2,3]");
        assert_eq!((copy.file.len, copy.total), (7, 3));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only");

        // A newer version of the same list replaces it.
        spool.claim("\"s2\"", "all".into());
        let writer = spool.claim("\"s2\"", "all".into()).unwrap();
        writer.finish(0);
        assert!(spool.ready("\"s1\"").is_none());
        assert!(!copy.path.exists());
        assert!(spool.ready("\"s2\"").is_some());
    }

    #[test]
    fn an_unfinished_copy_is_removed_and_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("shop.db")).unwrap();
        spool.claim("\"s9\"", "all".into());
        let mut writer = spool.claim("\"s9\"", "all".into()).unwrap();
        writer.write(b"[1,");
        drop(writer);
        assert!(spool.ready("\"s9\"").is_none());
        let left = std::fs::read_dir(dir.path().join("shop.db.lists"))
            .unwrap()
            .count();
        assert_eq!(left, 0);
        // And it may be written again.
        assert!(spool.claim("\"s9\"", "all".into()).is_some());
    }

    #[test]
    fn a_copy_changed_or_replaced_behind_the_servers_back_is_forgotten_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("shop.db")).unwrap();
        for (n, damage) in ["truncate", "remove", "symlink", "same length", "replaced"]
            .into_iter()
            .enumerate()
        {
            let tag = format!("\"s{n}\"");
            spool.claim(&tag, format!("slot {n}"));
            let mut writer = spool.claim(&tag, format!("slot {n}")).unwrap();
            writer.write(b"[1,2,3]");
            writer.finish(3);
            let copy = spool.usable(&tag).unwrap();
            assert!(open_copy(&copy).is_ok());
            match damage {
                "truncate" => std::fs::write(&copy.path, b"[1").unwrap(),
                "remove" => std::fs::remove_file(&copy.path).unwrap(),
                "same length" => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    std::fs::write(&copy.path, b"[9,9,9]").unwrap();
                }
                "replaced" => {
                    let other = dir.path().join("other");
                    std::fs::write(&other, b"[7,7,7]").unwrap();
                    std::fs::rename(&other, &copy.path).unwrap();
                }
                _ => {
                    let other = dir.path().join("secret");
                    std::fs::write(&other, b"TOPSECRET").unwrap();
                    std::fs::remove_file(&copy.path).unwrap();
                    std::os::unix::fs::symlink(&other, &copy.path).unwrap();
                }
            }
            assert!(open_copy(&copy).is_err(), "{damage}");
            assert!(spool.usable(&tag).is_none(), "{damage}");
            assert!(spool.ready(&tag).is_none(), "{damage}: forgotten");
        }
    }

    #[test]
    fn a_folder_that_is_a_link_is_not_used_and_only_dead_servers_copies_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("linked.db.lists")).unwrap();
        assert!(Spool::open(&dir.path().join("linked.db")).is_none());
        assert!(elsewhere.join("keep.txt").exists());

        let lists = dir.path().join("shop.db.lists");
        std::fs::create_dir(&lists).unwrap();
        let live = std::process::id();
        for name in [
            "999999999-sdead.list".to_owned(),
            format!("{live}-sold.part"),
            "notes.txt".to_owned(),
        ] {
            std::fs::write(lists.join(name), b"x").unwrap();
        }
        // A copy of another running server (pid 1 runs as long as this machine).
        std::fs::write(lists.join("1-sother.list"), b"x").unwrap();
        Spool::open(&dir.path().join("shop.db")).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&lists)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1-sother.list", "notes.txt"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&lists).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "made owner-only");
    }

    #[test]
    fn a_folder_swapped_for_a_link_while_serving_is_neither_read_nor_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("shop.db")).unwrap();
        spool.claim("\"s1\"", "all".into());
        let mut writer = spool.claim("\"s1\"", "all".into()).unwrap();
        writer.write(b"[1]");
        writer.finish(1);
        let copy = spool.usable("\"s1\"").unwrap();
        let lists = dir.path().join("shop.db.lists");
        let decoy = dir.path().join("decoy");
        std::fs::create_dir(&decoy).unwrap();
        std::fs::write(decoy.join(copy.path.file_name().unwrap()), b"[2]").unwrap();
        std::fs::rename(&lists, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&decoy, &lists).unwrap();
        assert!(spool.usable("\"s1\"").is_none());
        spool.claim("\"s2\"", "all".into());
        assert!(spool.claim("\"s2\"", "all".into()).is_none());
        assert_eq!(
            std::fs::read_dir(&decoy).unwrap().count(),
            1,
            "nothing written there"
        );
    }

    #[test]
    fn at_most_kept_copies_stay() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("shop.db")).unwrap();
        for n in 0..KEPT + 3 {
            let tag = format!("\"s{n}\"");
            spool.claim(&tag, format!("page {n}"));
            spool.claim(&tag, format!("page {n}")).unwrap().finish(1);
        }
        let files = std::fs::read_dir(dir.path().join("shop.db.lists"))
            .unwrap()
            .count();
        assert_eq!(files, KEPT);
        assert!(spool.ready("\"s0\"").is_none());
        assert!(spool.ready(&format!("\"s{}\"", KEPT + 2)).is_some());
    }
}
